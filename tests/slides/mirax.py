"""Write a small MIRAX (.mrxs) slide: the .mrxs file, and beside it a folder of the same name holding
Slidedat.ini, Index.dat and one data file of JPEG images (the layout 3DHISTECH scanners write)."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
from PIL import Image

SLIDE_ID = "5f0d1c2a-sua-portal-test"


def _jpeg(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="JPEG", quality=90)
    return out.getvalue()


def write_mirax(folder: Path, name: str = "slide", *, images: int = 2, image_px: int = 64,
                mpp: float = 0.25, seed: int = 0) -> Path:
    """A MIRAX slide of ``images`` x ``images`` camera images of ``image_px`` pixels, two zoom levels.

    Returns the path of the .mrxs file; its data is in ``folder/name/``.
    """
    rng = np.random.default_rng(seed)
    base = images * image_px
    full = np.full((base, base, 3), 235, np.uint8)
    yy, xx = np.mgrid[:base, :base]
    full[(yy - base / 2) ** 2 + (xx - base / 2) ** 2 < (base / 3) ** 2] = (190, 80, 160)
    full = np.clip(full.astype(int) + rng.integers(-8, 8, full.shape), 0, 255).astype(np.uint8)
    data_dir = folder / name
    data_dir.mkdir(parents=True, exist_ok=True)
    data = bytearray(b"01.02" + SLIDE_ID.encode())
    # (image index, offset, length) per zoom level; file number 0 for all.
    levels: list[list[tuple[int, int, int]]] = [[], []]
    for y in range(images):
        for x in range(images):
            tile = _jpeg(full[y * image_px:(y + 1) * image_px, x * image_px:(x + 1) * image_px])
            levels[0].append((y * images + x, len(data), len(tile)))
            data += tile
    # Zoom level 1: the images concatenated 2 x 2 and halved; image indices stay in level-0 units.
    half = np.asarray(Image.fromarray(full).resize((base // 2, base // 2)))
    for y in range(0, images, 2):
        for x in range(0, images, 2):
            part = half[y * image_px // 2:(y + 2) * image_px // 2, x * image_px // 2:(x + 2) * image_px // 2]
            canvas = np.full((image_px, image_px, 3), 255, np.uint8)
            canvas[:part.shape[0], :part.shape[1]] = part
            tile = _jpeg(canvas)
            levels[1].append((y * images + x, len(data), len(tile)))
            data += tile
    (data_dir / "Data0000.dat").write_bytes(bytes(data))

    header = b"01.02" + SLIDE_ID.encode()
    index = bytearray(header)
    hier_root = len(index)
    index += b"\0" * 8  # hier root pointer, nonhier root pointer: filled below
    level_table = len(index)
    index += b"\0" * (4 * len(levels))
    pages = []
    for records in levels:
        start = len(index)
        index += struct.pack("<ii", 0, start + 8)  # a 0, then the first data page
        index += struct.pack("<ii", len(records), 0)  # page length, no next page
        for image_index, offset, length in records:
            index += struct.pack("<iiii", image_index, offset, length, 0)
        pages.append(start)
    nonhier = len(index)
    index += struct.pack("<i", 0)
    struct.pack_into("<ii", index, hier_root, level_table, nonhier)
    for i, start in enumerate(pages):
        struct.pack_into("<i", index, level_table + 4 * i, start)
    (data_dir / "Index.dat").write_bytes(bytes(index))

    sections = "".join(
        f"[LAYER_0_LEVEL_{i}_SECTION]\nIMAGE_CONCAT_FACTOR={0 if i == 0 else 1}\nOVERLAP_X=0\nOVERLAP_Y=0\n"
        f"MICROMETER_PER_PIXEL_X={mpp * 2 ** i}\nMICROMETER_PER_PIXEL_Y={mpp * 2 ** i}\n"
        f"IMAGE_FILL_COLOR_BGR=16777215\nDIGITIZER_WIDTH={image_px}\nDIGITIZER_HEIGHT={image_px}\n"
        "IMAGE_FORMAT=JPEG\n\n"
        for i in range(len(levels))
    )
    (data_dir / "Slidedat.ini").write_text(
        "[GENERAL]\nSLIDE_VERSION=01.02\nSLIDE_ID=" + SLIDE_ID + f"\nIMAGENUMBER_X={images}\n"
        f"IMAGENUMBER_Y={images}\nOBJECTIVE_MAGNIFICATION=40\nCameraImageDivisionsPerSide=1\n\n"
        "[HIERARCHICAL]\nHIER_COUNT=1\nNONHIER_COUNT=0\nINDEXFILE=Index.dat\nHIER_0_NAME=Slide zoom level\n"
        f"HIER_0_COUNT={len(levels)}\n"
        + "".join(f"HIER_0_VAL_{i}=ZoomLevel_{i}\nHIER_0_VAL_{i}_SECTION=LAYER_0_LEVEL_{i}_SECTION\n"
                  for i in range(len(levels)))
        + "\n[DATAFILE]\nFILE_COUNT=1\nFILE_0=Data0000.dat\n\n" + sections
    )
    mrxs = folder / f"{name}.mrxs"
    mrxs.write_bytes(b"MIRAX slide: its data is in the folder of the same name.\n")
    return mrxs
