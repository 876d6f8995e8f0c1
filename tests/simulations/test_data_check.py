"""python -m simulations.data check: what it reports for present, non-original, missing and corrupt data."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulations.data import main
from tests.fedcl.data.formats import write_cifar, write_five_datasets


def test_reports_files_checksums_classes_and_tasks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare
    write_cifar(tmp_path, "cifar100", n_train=400, n_test=100)
    # Execute
    rc = main(["check", "stream=split_cifar100", f"stream.data_dir={tmp_path}", "federation.num_clients=4"])
    out = capsys.readouterr().out
    # Assert
    assert rc == 0
    assert "cifar-100-python/train  (" in out and "differs from the original 16019d7e3df5f24257cddd939b257f8d" in out
    assert "classes: 100 (fine0, fine1" in out and "samples: train 400, test 100; image shape [3, 32, 32]" in out
    assert "task 9: 10 classes [90, 91" in out and "one head per task, 4 clients" in out
    assert "OK: the stream can be built" in out


def test_five_datasets_lists_every_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_five_datasets(tmp_path)
    assert main(["check", "stream=five_datasets", f"stream.data_dir={tmp_path}", "federation.num_clients=2"]) == 0
    out = capsys.readouterr().out
    for part in ("cifar-10-batches-py", "mnist", "svhn", "fashion_mnist", "notmnist"):
        assert str(tmp_path / part) in out
    assert "classes: 50" in out and "task 4: 10 classes [40" in out


def test_missing_and_corrupt_data_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Execute / Assert: nothing there
    assert main(["check", "stream=split_cifar10", f"stream.data_dir={tmp_path}"]) == 1
    assert "no CIFAR-10 found" in capsys.readouterr().err
    # a truncated batch
    ref = write_cifar(tmp_path, "cifar10")
    (ref["folder"] / "data_batch_2").write_bytes(b"\x80\x02}q")
    assert main(["check", "stream=split_cifar10", f"stream.data_dir={tmp_path}"]) == 1
    assert "data_batch_2 is not a readable pickle" in capsys.readouterr().err


def test_bad_overrides_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "stream=cifar1000"]) == 2
    assert "stream" in capsys.readouterr().err
