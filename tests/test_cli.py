"""The `tconv` command line: every expected failure is one line on stderr naming the
argument, exit status 2, no traceback; defaults in --help; --version."""

from __future__ import annotations

import pytest
import torch

from tconv import __version__, cli
from tconv.arguments import dtype_list, int_list, pass_list

BAD = [
    (["tune", "--dry-run", "--dtypes", "fp17"], "--dtypes"),
    (["tune", "--dry-run", "--model", "nomodule"], "--model"),
    (["tune", "--dry-run", "--model", "tconv.testing:nothere"], "--model"),
    (["tune", "--dry-run", "--model", "package_that_is_not_installed.models:net"], "--model"),
    (["tune", "--dry-run", "--model", "tconv.testing:small_model", "--input-shape", "2,3,16"], "--model"),
    (["tune", "--dry-run", "--ops", "forward"], "--ops"),
    (["tune", "--dry-run", "--input-shape", "2,x,16,16"], "--input-shape"),
    (["tune", "--suite", "nope"], "--suite"),
    (["tune", "--dry-run", "--arch", "75"], "--arch"),
    (["bench", "--ops", "forward"], "--ops"),
    (["bench", "--dtypes", "float17"], "--dtypes"),
    (["bench", "--layouts", "nchw"], "--layouts"),
    (["bench", "--archs", "75"], "--archs"),
    (["bench", "--suite", "nope"], "--suite"),
    (["bench", "--workers", "0"], "--workers"),
    (["report", "--csv", "/nonexistent/bench.csv"], "--csv"),
    (["demo", "--dtypes", "int8"], "--dtypes"),
    (["nosuchcommand"], "nosuchcommand"),
]


@pytest.mark.parametrize("argv,word", BAD, ids=[" ".join(argv) for argv, _ in BAD])
def test_bad_arguments_exit_2_with_one_line(argv, word, capsys):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, (out, err)
    assert len(lines) == 1 and word in lines[0], err
    assert "Traceback" not in out + err


def test_report_of_a_csv_that_bench_did_not_write(tmp_path, capsys):
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")
    assert cli.main(["report", "--csv", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--csv" in err[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message a machine without a GPU gets")
def test_tune_without_a_gpu_says_so_on_one_line(capsys):
    assert cli.main(["tune", "--suite", "tiny"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--dry-run" in err[0] and "CUDA" in err[0]


def test_version_and_defaults_in_help(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip().startswith(f"tconv {__version__} (torch ")
    for command, default in (("tune", "(default: 1,3,224,224)"), ("bench", "(default: float16,bfloat16,float32)"),
                             ("report", "(default: results/bench.csv)"), ("demo", "(default: float32,float16,bfloat16)")):
        assert cli.main([command, "--help"]) == 0
        text = " ".join(capsys.readouterr().out.split())
        assert default in text
        assert "(default: True)" not in text  # a --no-x switch shows none: it would read as "on"
    assert cli.main(["tune", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--layout {channels_last,contiguous} memory layout" in text
    assert "without compiling them --workers" in text  # --no-compile's help, no default after it


def test_argument_types_parse_torch_names_and_aliases():
    assert dtype_list("fp16,bf16,torch.float32,double,half") == [torch.float16, torch.bfloat16, torch.float32,
                                                                  torch.float64]
    assert pass_list("wgrad,fprop,wgrad") == ["wgrad", "fprop"]
    assert int_list("32, 3,224,224") == [32, 3, 224, 224]
