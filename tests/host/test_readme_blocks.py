"""The README's result tables are generated: each block between
``<!-- lab-report:NAME:begin -->`` and ``<!-- lab-report:NAME:end -->`` must be exactly what
`lab report analysis/NAME/` makes of the committed analysis/NAME/NAME.labbundle.tar.gz (or,
for a study with no bundle yet, the line saying so). A failure names the study and the line;
the fix is `lab report analysis/NAME/`, never an edit by hand."""

from __future__ import annotations

import re
from pathlib import Path

from lab.notebook import StudyFolder, check_folder, check_readme

ROOT = Path(__file__).parents[2]


def test_every_readme_block_matches_its_committed_bundle() -> None:
    problems = check_readme(ROOT / "README.md", ROOT / "analysis")
    assert not problems, "\n".join(problems) + (
        "\nregenerate with: lab report analysis/NAME/")


def test_the_published_studies_have_blocks_and_markers_pair_up() -> None:
    text = (ROOT / "README.md").read_text()
    begins = re.findall(r"<!-- lab-report:([^:]+):begin -->", text)
    ends = re.findall(r"<!-- lab-report:([^:]+):end -->", text)
    assert begins == ends and len(set(begins)) == len(begins)
    assert {"ukva", "highpte-cost"} <= set(begins)


def test_published_folders_reports_match_their_bundles() -> None:
    problems = [p for d in sorted((ROOT / "analysis").iterdir()) if d.is_dir()
                for p in check_folder(StudyFolder(d))]
    assert not problems, "\n".join(problems)
