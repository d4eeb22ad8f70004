"""``matteflow submit --say`` against the live server: the server reads the words and says what it understood."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from matteflow.submit import main

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("worker")]


def test_submit_say_gives_id_photos(live_server: Any, samples: Any, tmp_path: Path, capsys: Any) -> None:
    image = tmp_path / "me.jpg"
    image.write_bytes(samples.jpeg)
    out = tmp_path / "r.zip"
    args = [str(image), "--server", live_server.url, "-o", str(out), "--no-progress", "--say", "35x45 passport photo"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "Understood: 35x45 passport photo → preset passport-35x45" in err
    with zipfile.ZipFile(out) as archive:
        assert set(archive.namelist()) == {"me.jpg", "manifest.json"}
        assert Image.open(io.BytesIO(archive.read("me.jpg"))).size == (413, 531)


def test_submit_bad_keep_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path), "-o", str(tmp_path / "r.zip"), "--keep", "some"])
    assert exit_info.value.code == 2
