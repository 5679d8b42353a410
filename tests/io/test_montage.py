"""Montage captions (volgen/io/montage.py): a long name is cut short so it does not run into the next panel."""
from PIL import Image, ImageDraw, ImageFont

from volgen.io.montage import fit_caption


def test_a_long_caption_is_cut_to_its_panel_and_keeps_its_view():
    draw = ImageDraw.Draw(Image.new("RGB", (10, 10)))
    font = ImageFont.load_default(size=12)
    assert fit_caption(draw, "LS Ki", "axial", font, 150) == "LS Ki axial"
    long = fit_caption(draw, "its expected |Ki error| (the map)", "coronal", font, 150)
    assert long.endswith("... coronal") and long.startswith("its expected")
    assert draw.textlength(long, font=font) <= 150 < draw.textlength("its expected |Ki error| (the map) coronal",
                                                                     font=font)
