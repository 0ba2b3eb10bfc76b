"""What a file is and what it is called: type sniffing, display names, Content-Disposition, signed links, image
probing (roost.attachments), without a server."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from roost.attachments.images import THUMB_PX, TooManyPixels, probe
from roost.attachments.links import LINK_TTL_S, Links
from roost.attachments.names import MAX_NAME_CHARS, content_disposition, display_name
from roost.attachments.port import new_id, valid_id
from roost.attachments.sniff import Texts, sniff


def _image(kind: str, size: tuple[int, int] = (8, 8), mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, "red").save(out, kind)
    return out.getvalue()


def _texts(*chunks: bytes) -> bool:
    texts = Texts()
    for chunk in chunks:
        texts.feed(chunk)
    texts.feed(b"", final=True)
    return texts.ok


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (_image("PNG"), "image/png"),
        (_image("JPEG"), "image/jpeg"),
        (_image("GIF"), "image/gif"),
        (_image("WEBP"), "image/webp"),
        (b"%PDF-1.7\n%...", "application/pdf"),
    ],
)
def test_types_come_from_magic_numbers(data: bytes, expected: str) -> None:
    """[R-ATT-2] The type is read from the file's first bytes, whatever the client calls it."""
    assert sniff(data[:16], text=False) == expected


def test_text_is_valid_utf8_without_nul_and_everything_else_is_bytes() -> None:
    """[R-ATT-2] No magic number: text/plain only for UTF-8 without a NUL (a character split across chunks is
    fine); HTML and SVG are text, never a page type; anything else is application/octet-stream."""
    snowman = "☃ <script>alert(1)</script>".encode()
    assert _texts(snowman[:1], snowman[1:])
    assert sniff(snowman[:16], _texts(snowman)) == "text/plain"
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>'
    assert sniff(svg[:16], _texts(svg)) == "text/plain"
    assert not _texts(b"abc\x00def")
    assert not _texts(b"\xff\xfe\xfd")
    assert not _texts("é".encode()[:1])  # cut in the middle of a character at the end
    assert sniff(b"MZ\x90\x00", False) == "application/octet-stream"


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\system32\\cmd.exe", "cmd.exe"),
        ("/abs/path/report.pdf", "report.pdf"),
        ("..", "file"),
        ("", "file"),
        (".bashrc", "bashrc"),
        ("a\x00b\nc\td.txt", "abcd.txt"),
        ("evil\u202egnp.exe", "evilgnp.exe"),
        ('<img src=x onerror="alert(1)">.png', "_img src=x onerror=_alert(1)__.png"),
        ("  many   spaces .txt ", "many spaces .txt"),
        ("photo:1?.jpg", "photo_1_.jpg"),
    ],
)
def test_display_names_are_a_last_path_component_without_controls(raw: str, shown: str) -> None:
    """[R-ATT-5] A name is a label: no directory, no control or bidi characters, none of <>:"/\\|?*, no leading dot;
    nothing left is ``file``."""
    assert display_name(raw) == shown


def test_long_names_are_cut_keeping_the_extension() -> None:
    """[R-ATT-5] At most MAX_NAME_CHARS code points, the extension kept."""
    name = display_name("x" * 500 + ".tar.gz")
    assert len(name) == MAX_NAME_CHARS and name.endswith(".gz")


def test_content_disposition_has_an_ascii_fallback_and_the_exact_name() -> None:
    """[R-ATT-5] RFC 6266: ``filename`` holds only safe ASCII (no quote, semicolon or newline can end it) and
    ``filename*`` the UTF-8 name percent-encoded."""
    header = content_disposition('résumé "final"; x=1.pdf', inline=False)
    assert header == (
        'attachment; filename="r_sum_ _final__ x_1.pdf"; '
        "filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22%3B%20x%3D1.pdf"
    )
    assert content_disposition("a.png", inline=True).startswith("inline; ")


def test_ids_are_server_made_hex() -> None:
    """[R-ATT-5] Only a server-made id reaches a path or a key."""
    assert valid_id(new_id())
    for bad in ("../x", "A" * 32, "0" * 31, "0" * 32 + "/", "", "0" * 31 + "g"):
        assert not valid_id(bad)


def test_links_are_bound_to_room_file_user_part_and_time() -> None:
    """[R-ATT-6] A signed link checks only for what it was made: another room, file, user, part, an expired or a
    far-future expiry, another key: refused."""
    links = Links(b"secret")
    path, expires = links.make("lobby", "a" * 32, "bob", False, now_s=1000)
    assert expires == 1000 + LINK_TTL_S and path.startswith(f"/api/rooms/lobby/attachments/{'a' * 32}?")
    sig = path.rsplit("sig=", 1)[1]
    assert links.check("lobby", "a" * 32, "bob", False, expires, sig, now_s=1001)
    assert not links.check("other", "a" * 32, "bob", False, expires, sig, now_s=1001)
    assert not links.check("lobby", "b" * 32, "bob", False, expires, sig, now_s=1001)
    assert not links.check("lobby", "a" * 32, "eve", False, expires, sig, now_s=1001)
    assert not links.check("lobby", "a" * 32, "bob", True, expires, sig, now_s=1001)
    assert not links.check("lobby", "a" * 32, "bob", False, expires, sig, now_s=expires + 1)
    assert not Links(b"other").check("lobby", "a" * 32, "bob", False, expires, sig, now_s=1001)


def test_images_get_their_size_and_a_bounded_thumbnail(tmp_path: Path) -> None:
    """[R-ATT-2] A large image gets width, height and a thumbnail within THUMB_PX; a small one is its own; a file
    that does not decode is no image (None); a header declaring too many pixels is refused before decoding."""
    big = tmp_path / "big.png"
    big.write_bytes(_image("PNG", (1200, 600)))
    got = probe(big, 50_000_000)
    assert got is not None and (got.width, got.height) == (1200, 600) and got.thumb is not None
    with Image.open(io.BytesIO(got.thumb)) as thumb:
        assert max(thumb.size) <= THUMB_PX and got.thumb_type == "image/jpeg"
    small = tmp_path / "small.png"
    small.write_bytes(_image("PNG", (8, 8), "RGBA"))
    got = probe(small, 50_000_000)
    assert got is not None and got.thumb is None and (got.width, got.height) == (8, 8)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    assert probe(broken, 50_000_000) is None
    with pytest.raises(TooManyPixels):
        probe(big, 1000)
