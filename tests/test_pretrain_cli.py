"""`seedlab pretrain`: one flag per PretrainConfig field, and bad input as a one-line error with exit code 2,
before any pretraining starts."""

from dataclasses import fields

import pytest

from seedlab.cli import main
from seedlab.train.pretrain import PretrainConfig


def test_every_pretrain_config_field_has_a_flag(capsys):
    with pytest.raises(SystemExit) as done:
        main(["pretrain", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: seedlab pretrain")
    for f in fields(PretrainConfig):
        if f.name not in ("size", "pretrain_seed"):
            assert f"--{f.name.replace('_', '-')}" in text, f.name
    for flag in ("--sizes", "--seeds", "--experiment", "--tracking-uri", "--cpus-per-trial", "--max-concurrent",
                 "--evidence", "--finetune-seeds", "--finetune-lrs", "--json"):
        assert flag in text


@pytest.mark.parametrize("args, fragment", [
    (["--seeds", "a-b"], "invalid seeds 'a-b'"),
    (["--sizes", "huge"], "cannot pretrain 'huge' (valid: a BERT size"),
    (["--schedule", "step"], "unknown schedule 'step'"),
    (["--evidence", "--finetune-lrs", "fast"], "invalid --finetune-lrs 'fast'"),
])
def test_bad_input_is_one_line_and_exit_code_2(args, fragment, capsys, tmp_path):
    code = main(["pretrain", *args, "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"])
    err = capsys.readouterr().err
    assert code == 2 and fragment in err and err.count("\n") == 1
