"""`python -m wsi convert` to a folder, and `tessera convert` straight into the archive."""

from __future__ import annotations

import argparse
import asyncio
import re
from pathlib import Path

import pydicom
import pytest

from hub.convert_cli import register as register_tessera_convert
from wsi.cli import register


def _parser(register=register) -> argparse.ArgumentParser:
    """The shape hub.cli gives every package: subcommands sharing a common --data option."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data", type=Path, default=None)
    parser = argparse.ArgumentParser(prog="tessera")
    sub = parser.add_subparsers()

    class Sub:
        def add_parser(self, name, **kwargs):
            kwargs.setdefault("parents", [common])
            return sub.add_parser(name, **kwargs)

    register(Sub())
    return parser


def _run(*argv: str, register=register) -> int:
    args = _parser(register).parse_args(list(argv))
    return args.func(args)


@pytest.mark.parametrize(
    "register", [register, register_tessera_convert], ids=["python -m wsi", "tessera"]
)
def test_convert_to_a_folder(corpus, tmp_path, capsys, register):
    out = tmp_path / "out"
    code = _run(
        "convert",
        str(corpus / "wsi" / "CMU-1-Small-Region.svs"),
        "--out",
        str(out),
        "--patient-id",
        "P-17",
        "--patient-name",
        "DOE^JANE",
        "--accession",
        "A-9",
        "--specimen-id",
        "S-1",
        "--quiet",
        register=register,
    )
    assert code == 0
    printed = capsys.readouterr().out.split()
    assert sorted(printed) == sorted(str(p) for p in out.iterdir())
    ds = pydicom.dcmread(out / "level0.dcm", stop_before_pixels=True)
    assert (ds.PatientID, str(ds.PatientName), ds.AccessionNumber) == ("P-17", "DOE^JANE", "A-9")
    assert ds.ContainerIdentifier == "S-1"


def test_bad_slide_exits_non_zero_with_the_reason(corpus, tmp_path, capsys):
    code = _run("convert", str(corpus / "bad" / "unopenable.tiff"), "--out", str(tmp_path / "o"))
    assert code == 1
    assert "unopenable.tiff" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_convert_into_the_archive(corpus, tmp_path):
    from hub.archive import Archive
    from hub.config import Settings

    data = tmp_path / "data"
    code = _run(
        "convert",
        str(corpus / "wsi" / "small.svs"),
        "--into-archive",
        "--data",
        str(data),
        "--patient-id",
        "P-18",
        "--quiet",
        register=register_tessera_convert,
    )
    assert code == 0

    async def stored() -> list:
        archive = await Archive.open(Settings.from_env(data_dir=data))
        try:
            from hub.archive.query import Query

            return await archive.search(Query(level="INSTANCE", keys={"PatientID": "P-18"}))
        finally:
            await archive.close()

    rows = asyncio.run(stored())
    assert len(rows) == 1  # level 0; a 16 px slide has no room for a thumbnail below it
    sop_classes = {row["00080016"]["Value"][0] for row in rows}
    assert sop_classes == {"1.2.840.10008.5.1.4.1.1.77.1.6"}


def _stored(data: Path) -> list:
    from hub.archive import Archive
    from hub.archive.query import Query
    from hub.config import Settings

    async def search() -> list:
        archive = await Archive.open(Settings.from_env(data_dir=data))
        try:
            return await archive.search(Query(level="INSTANCE", keys={}))
        finally:
            await archive.close()

    return asyncio.run(search())


def test_into_the_archive_ingests_smallest_first(corpus, tmp_path, capsys):
    data = tmp_path / "data"
    ndpi = str(corpus / "wsi" / "test3-DAPI-2.ndpi")
    code = _run(
        "convert", ndpi, "--into-archive", "--data", str(data), register=register_tessera_convert
    )
    assert code == 0
    captured = capsys.readouterr()
    ingested = [line.split(":")[0] for line in captured.out.splitlines()]
    assert ingested == ["overview.dcm", *(f"level{i}.dcm" for i in range(6, -1, -1))]
    assert len(_stored(data)) == 8
    report = captured.err  # the conversion report: how each instance was made
    assert "level0.dcm: VOLUME 3968x4864, 80 frames, re-tiled losslessly" in report
    assert "level6.dcm: VOLUME 62x76, 1 frame, decoded from the source and re-encoded" in report


def test_into_the_archive_failing_part_way_says_the_study_is_incomplete(corpus, tmp_path, capsys):
    from slide_faults import ndpi_with_broken_level0

    data = tmp_path / "data"
    broken = ndpi_with_broken_level0(corpus, tmp_path / "broken.ndpi")
    code = _run(
        "convert",
        str(broken),
        "--into-archive",
        "--data",
        str(data),
        "--quiet",
        register=register_tessera_convert,
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "cannot re-tile the 3968x4864 level" in err
    # How many smaller instances were done when level 0 failed depends on the encoders'
    # scheduling; the message must give the number actually stored.
    found = re.search(r"the study is incomplete: (\d+) instances were stored", err)
    assert found and int(found.group(1)) >= 1, err
    assert len(_stored(data)) == int(found.group(1))
