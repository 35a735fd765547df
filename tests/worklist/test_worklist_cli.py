"""`tessera worklist ...` and the PS3.17 Annex J image attributes built from an item."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from hub.archive.index import make_engine
from hub.config import Settings
from hub.worklist import get_item, image_attributes
from hub.worklist.cli import register


def tessera(*argv: str, capsys) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="tessera")
    parser.add_argument("--data", type=Path, default=None)
    register(parser.add_subparsers())
    args = parser.parse_args(list(argv))
    code = args.func(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_add_list_and_transitions(tmp_path: Path, capsys) -> None:
    data = str(tmp_path / "data")
    code, out, _ = tessera(
        "worklist", "add", "--data", data, "--json", "--patient-name", "DOE^BABY",
        "--patient-id", "P7", "--modality", "US", "--birth-date", "2026-06-01",
        "--weight-kg", "6.2", "--size-m", "0.64", "--station-ae", "POCUS1",
        "--start", "2026-11-28T09:30", "--protocol-code", "HIP-1^99T^Hip protocol",
        capsys=capsys,
    )  # fmt: skip
    assert code == 0
    (item,) = json.loads(out)
    assert item["age"] == "005M" and item["status"] == "SCHEDULED"

    code, out, _ = tessera("--data", data, "worklist", "list", "--modality", "US", capsys=capsys)
    assert code == 0 and "DOE^BABY" in out and "SCHEDULED" in out

    code, _, err = tessera("worklist", "complete", "--data", data, str(item["id"]), capsys=capsys)
    assert code == 3 and "cannot complete" in err
    for action, status in (("start", "STARTED"), ("complete", "COMPLETED")):
        code, out, _ = tessera("worklist", action, "--data", data, str(item["id"]), capsys=capsys)
        assert code == 0 and status in out
    code, _, err = tessera("worklist", "cancel", "--data", data, "999", capsys=capsys)
    assert code == 4 and "no worklist item" in err

    code, out, _ = tessera(
        "worklist", "list", "--data", data, "--status", "SCHEDULED", capsys=capsys
    )
    assert code == 0 and out == ""


def test_cli_refuses_bad_input(tmp_path: Path, capsys) -> None:
    code, _, err = tessera(
        "worklist", "add", "--data", str(tmp_path), "--patient-name", "X", "--patient-id", "1",
        "--modality", "US", "--size-m", "120", capsys=capsys,
    )  # fmt: skip
    assert code == 2 and "size_m" in err


def test_image_attributes_follow_annex_j(tmp_path: Path, capsys) -> None:
    data = str(tmp_path / "data")
    _, out, _ = tessera(
        "worklist", "add", "--data", data, "--json", "--patient-name", "DOE^BABY",
        "--patient-id", "P7", "--modality", "US", "--sex", "F", "--age", "006M",
        "--weight-kg", "6.2", "--size-m", "0.64", "--accession", "ACC42",
        "--requested-procedure-id", "RP42", "--sps-id", "SPS42",
        "--description", "Neonatal hip ultrasound",
        "--procedure-code", "HIPUS^99T^Hip ultrasound",
        "--protocol-code", "HIP-1^99T^Hip protocol", capsys=capsys,
    )  # fmt: skip
    (created,) = json.loads(out)

    async def load():
        eng = make_engine(Settings(data_dir=Path(data)).db_url)
        try:
            return await get_item(eng, created["id"])
        finally:
            await eng.dispose()

    item = asyncio.run(load())
    ds = image_attributes(item)
    assert ds.StudyInstanceUID == created["study_uid"]
    assert ds.AccessionNumber == "ACC42"
    assert "ReferencedStudySequence" in ds
    assert (ds.PatientName, ds.PatientID, ds.PatientSex) == ("DOE^BABY", "P7", "F")
    assert (ds.PatientAge, float(ds.PatientWeight), float(ds.PatientSize)) == ("006M", 6.2, 0.64)
    (request,) = ds.RequestAttributesSequence
    assert request.RequestedProcedureID == "RP42"
    assert request.ScheduledProcedureStepID == "SPS42"
    assert request.ScheduledProtocolCodeSequence[0].CodeValue == "HIP-1"
    assert request.RequestedProcedureCodeSequence[0].CodeMeaning == "Hip ultrasound"
    assert ds.PerformedProtocolCodeSequence[0].CodingSchemeDesignator == "99T"
    _no_new_dciodvfy_errors(ds, tmp_path)


def _dciodvfy_errors(path: Path) -> set[str]:
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    return {line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")}


def _no_new_dciodvfy_errors(attributes, tmp_path: Path) -> None:
    """Merged into a real image, the attributes add no dciodvfy error (PS3.3 modules)."""
    if shutil.which("dciodvfy") is None:
        pytest.skip("dicom3tools is not installed")
    source = Path(get_testdata_file("CT_small.dcm"))
    image = dcmread(source)
    image.update(attributes)
    image.SOPInstanceUID = image.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    merged = tmp_path / "merged.dcm"
    image.save_as(merged)
    new = _dciodvfy_errors(merged) - _dciodvfy_errors(source)
    assert not new, new
