-- Run once by the postgres image on an empty data dir (POSTGRES_USER=mlflow, POSTGRES_DB=mlflow):
-- the second database holds MLflow's basic-auth users and permissions.
CREATE DATABASE mlflow_auth OWNER mlflow;
