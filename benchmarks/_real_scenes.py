"""Full-frame scene photographs: Tux Paint's colouring templates and the photographic desktop
wallpapers of three Debian packages. Their file names are not descriptions, so each caption below
was written by looking at the photo; drawings, renders and abstract wallpapers are not listed."""

from __future__ import annotations

import json
from pathlib import Path

from _real_debian import license_of, read_copyright
from _real_sources import Item

TUXPAINT_DATA = ("tuxpaint-data", "1:0.9.28-sdl2-1")
MATE = ("mate-backgrounds", "1.26.0-1")
LOMIRI_16 = ("lomiri-wallpapers-16.04", "20.04.0-2")
LOMIRI_20 = ("lomiri-wallpapers-20.04", "20.04.0-2")
PLASMA = ("plasma-workspace-wallpapers", "4:5.27.5-2")
PACKAGES = (TUXPAINT_DATA, MATE, LOMIRI_16, LOMIRI_20, PLASMA)

# file stem -> (caption, concept, label)
TEMPLATES = {
    "burnt_bark": ("burnt tree bark", "bark", "nature scene"),
    "cliff": ("a rocky cliff under a blue sky", "cliff", "nature scene"),
    "corn_maze": ("tall corn plants in a corn maze", "corn maze", "nature scene"),
    "jellyfish": ("blue jellyfish in dark water", "jellyfish", "animal"),
    "lighthouse": ("a lighthouse", "lighthouse", "building"),
    "mossy_bark": ("mossy tree bark", "bark", "nature scene"),
    "mossy_log": ("a mossy log in a forest", "log", "nature scene"),
    "mudstone": ("a mudstone rock surface", "rock", "nature scene"),
    "ocean_splash": ("ocean water splashing", "ocean", "nature scene"),
    "ocean_waves": ("ocean waves", "ocean", "nature scene"),
    "redwoods_above": ("looking up at redwood trees", "trees", "nature scene"),
    "rocks": ("a pile of rounded rocks", "rock", "nature scene"),
    "sheep": ("sheep grazing in a field", "sheep", "animal"),
    "spiders_web": ("a spider's web", "web", "nature scene"),
    "sun_behind_clouds": ("the sun behind clouds", "sky", "nature scene"),
    "sun_behind_leaves": ("the sun shining through leaves", "leaves", "nature scene"),
    "trees_above": ("looking up at trees against the sky", "trees", "nature scene"),
    "trees_at_dusk": ("bare trees at dusk", "trees", "nature scene"),
    "wool_mill_machine": ("gears of an old wool mill machine", "machine", "household object"),
}
MATE_NATURE = {
    "Garden": ("an orange marigold flower", "marigold", "flower"),
    "Dune": ("dune grass by the sea", "grass", "nature scene"),
    "Wood": ("a close-up of pale wood grain", "wood", "nature scene"),
    "Aqua": ("a drop splashing into water", "water drop", "nature scene"),
    "TwoWings": ("dandelion seeds in front of an orange flower", "dandelion seeds", "plant"),
    "Storm": ("dark storm clouds over a flat landscape", "storm", "nature scene"),
    "GreenMeadow": ("green grass", "grass", "nature scene"),
    "RainDrops": ("raindrops on green leaves", "leaves", "plant"),
    "Blinds": ("a close-up of a green leaf", "leaf", "plant"),
    "FreshFlower": ("a close-up of an orange flower", "flower", "flower"),
    "LadyBird": ("a ladybird on a blade of grass", "ladybird", "insect"),
    "YellowFlower": ("a yellow flower", "flower", "flower"),
}
LOMIRI = {
    "Picture_1A_by_freespace": ("colourful paint brushes", "paint brushes", "household object"),
    "Wine_by_Jakkub_Mede": ("a drum on a beanbag in a living room", "living room", "household object"),
    "greentock_by_Peter_Nerlich": ("a wall clock", "clock", "household object"),
    "seeding_by_Clements_Engelhardt": ("dandelion seed heads in a meadow", "dandelion seeds", "plant"),
    "aitzgorri_by_Aitzol_Berasategi": ("mountains above an autumn forest and a meadow", "mountains", "nature scene"),
    "Dragonfly_by_Bolly": ("tree leaves against a blue sky", "leaves", "plant"),
    "friends_by_Aitzol_Berasategi": ("two dogs looking out of a wooden house", "dogs", "animal"),
    "sunset_by_Aitzol_Berasategi": ("the sun setting over hills", "sunset", "nature scene"),
    "picosdeeuropa_by_Aitzol_Berasategi": ("a path through rocky mountains", "mountains", "nature scene"),
    "Picture_0B_by_freespace": ("a halved fig in a red bowl", "fig", "fruit"),
    "life_by_Aitzol_Berasategi": ("a stream flowing over rocks in a forest", "stream", "nature scene"),
    "Bridge_by_Sander_Klootwijk": ("bridge cables against the sky", "bridge", "building"),
    "Kleiber_by_Lukas_Baubkus": ("a nuthatch on a tree trunk", "nuthatch", "animal"),
    "Infinite-Sea_by_Aury88": ("the Milky Way above the sea", "milky way", "nature scene"),
}
PLASMA_PHOTOS = {
    "BytheWater": ("a wooden pier by the water", "pier", "nature scene"),
    "ColdRipple": ("a jetty on a misty lake in black and white", "pier", "nature scene"),
    "ColorfulCups": ("rows of colourful plastic cups", "cups", "household object"),
    "DarkestHour": ("a misty blue lake at dawn", "lake", "nature scene"),
    "EveningGlow": ("rowing boats on a lake shore at sunset", "boats", "vehicle"),
    "FallenLeaf": ("fallen autumn leaves", "leaves", "plant"),
    "Grey": ("the curved facade of a modern building", "building", "building"),
    "OneStandsOut": ("green moss with one orange sprout", "moss", "plant"),
    "Path": ("a path through a dark pine forest", "forest", "nature scene"),
    "summer_1am": ("a calm lake at dusk", "lake", "nature scene"),
    "Kite": ("a kite in a blue sky with clouds", "kite", "nature scene"),
}


def _item(prefix: str, stem: str, path: Path, entry: tuple[str, str, str], pkg: tuple[str, str],
          lic: str) -> Item:
    caption, concept, label = entry
    return Item(f"{prefix}-{stem}", "image", caption, label, concept, f"{pkg[0]}@{pkg[1]}", lic,
                path.suffix, path.read_bytes)


def _by_name(stanzas, name: str) -> str:
    """DEP-5 lookup when the package installs files under other folders than its source tree."""
    for st in reversed(stanzas):
        if any(p.rsplit("/", 1)[-1] == name for p in st.patterns):
            return st.license
    return license_of(stanzas, name)


def scenes(roots: dict[str, Path]) -> list[Item]:
    """The captioned scene photos of every package in ``roots`` (package name -> root folder)."""
    items: list[Item] = []
    if TUXPAINT_DATA[0] in roots:
        base = roots[TUXPAINT_DATA[0]] / "usr/share/tuxpaint/templates"
        for stem, entry in TEMPLATES.items():
            items.append(_item("tpt", stem, base / f"{stem}.jpg", entry, TUXPAINT_DATA, "GPL-2+"))
    if MATE[0] in roots:
        root = roots[MATE[0]]
        stanzas = read_copyright(root / "usr/share/doc/mate-backgrounds/copyright")
        for stem, entry in MATE_NATURE.items():
            items.append(_item("mate", stem, root / f"usr/share/backgrounds/mate/nature/{stem}.jpg", entry,
                               MATE, license_of(stanzas, f"nature/{stem}.jpg")))
    for pkg in (LOMIRI_16, LOMIRI_20):
        if pkg[0] in roots:
            root = roots[pkg[0]]
            stanzas = read_copyright(root / f"usr/share/doc/{pkg[0]}/copyright")
            for path in sorted((root / "usr/share/backgrounds").glob("*.jpg")):
                if path.stem in LOMIRI:
                    items.append(_item("lomiri", path.stem, path, LOMIRI[path.stem], pkg,
                                       _by_name(stanzas, path.name)))
    if PLASMA[0] in roots:
        base = roots[PLASMA[0]] / "usr/share/wallpapers"
        stanzas = read_copyright(roots[PLASMA[0]] / "usr/share/doc/plasma-workspace-wallpapers/copyright")
        for name, entry in PLASMA_PHOTOS.items():
            images = sorted((p for p in (base / name / "contents/images").iterdir() if not p.is_symlink()),
                            key=lambda p: p.stat().st_size)
            meta = base / name / "metadata.json"
            upstream = json.loads(meta.read_text()).get("KPlugin", {}).get("License") if meta.exists() else None
            lic = f"{upstream} (upstream metadata)" if upstream else license_of(stanzas, f"{name}/x")
            items.append(_item("plasma", name, images[0], entry, PLASMA, lic))  # smallest size
    return items
