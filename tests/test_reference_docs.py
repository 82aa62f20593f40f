"""The docs' reference tables are generated from the code and the published CSVs: any drift fails here."""

import shutil

from benchmark.columns import COLUMNS
from benchmark.diagnostics import FLAGS
from benchmark.reference_docs import BLOCKS, ROOT, stale_blocks, write_blocks


def test_every_generated_block_matches_the_code():
    assert stale_blocks() == [], "run: python -m benchmark.reference_docs"


def test_a_column_or_flag_changed_in_the_code_makes_its_block_stale(tmp_path, monkeypatch):
    for file, _ in BLOCKS:
        (tmp_path / file).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / file, tmp_path / file)
    shutil.copytree(ROOT / "leaderboards", tmp_path / "leaderboards", dirs_exist_ok=True)
    assert stale_blocks(tmp_path) == []
    import benchmark.columns
    import benchmark.diagnostics

    monkeypatch.setattr(benchmark.columns, "COLUMNS", COLUMNS[:-1])
    monkeypatch.setattr(benchmark.diagnostics, "FLAGS", FLAGS[1:])
    assert stale_blocks(tmp_path) == ["docs/architecture.md: columns", "docs/protocol.md: flags"]
    write_blocks(tmp_path)
    assert stale_blocks(tmp_path) == []
    assert f"`{COLUMNS[-1].name}`" not in (tmp_path / "docs/architecture.md").read_text()
