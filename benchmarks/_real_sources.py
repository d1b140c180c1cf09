"""What each source package contributes to the real-world corpus: which files, with which caption,
concept (fine class), label (coarse class) and license. Captions are written from the package's own
names and descriptions (see benchmarks/REAL_DATA.md)."""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from _real_debian import license_of, rcc_files, read_copyright

TUXPAINT = ("tuxpaint-stamps-default", "2022.06.04-1")
GCOMPRIS = ("gcompris-qt-data", "3.1-2")
ASTERISK = ("asterisk-core-sounds-en-wav", "1.6.1-1")
ASTERISK_TEXT = ("asterisk-core-sounds-en", "1.6.1-1")  # the transcripts of the clips above
PACKAGES = (TUXPAINT, GCOMPRIS, ASTERISK, ASTERISK_TEXT)

# Tux Paint stamps: cut-out photographs mixed with drawings. Drawings are dropped by folder and by
# colour count (a drawing has few distinct colours), then by name for the few that pass both.
TP_DRAWING_DIRS = ("cartoon", "symbols", "seasonal/easter", "seasonal/hanukkah", "seasonal/newyears",
                   "clothes", "town/roadsigns", "town/flags")
TP_DRAWINGS = {"hedgehog", "eye", "pizza", "xmaswreath", "whale", "Santa", "tree", "6_saturn",
               "jackolantern_mean"}
TP_MIN_COLOURS = 150  # distinct 15-bit colours among opaque pixels
TP_MIN_SIDE = 48
TP_LABELS = {  # longest folder prefix wins
    "animals/fish": "fish", "animals/insects": "insect", "animals": "animal", "food/fruit": "fruit",
    "food/vegetables": "vegetable", "food/nuts": "nut", "food": "food", "plants/flowers": "flower",
    "plants": "plant", "household/tools": "tool", "household": "household object",
    "hobbies/music": "musical instrument", "hobbies": "household object", "vehicles": "vehicle",
    "military": "military", "space": "space", "sports": "sports equipment", "town": "building",
    "medical": "medical", "naturalforces": "nature", "seasonal": "holiday", "people": "person",
}
TP_CAPTIONS = {"explosion": "an explosion", "fire": "fire", "broccoli": "broccoli",
               "bradley": "an armoured fighting vehicle", "cep-2": "two ceps",
               "holly_leaves": "holly leaves", "final-roll-call": "a soldier's memorial"}
CAPTION_LEAD_WORDS = {"a", "an", "the", "some", "two", "another", "it's"}
MONUMENT_NAMES = {"Navajo": "Navajo National Monument", "Cabrillo": "Cabrillo National Monument",
                  "the Taj Mahal, India": "the Taj Mahal"}
THE_WORDS = {"tower", "gate", "cathedral", "palace", "memorial", "temple", "pyramid", "baths", "wall",
             "caves", "amphitheatre", "statue", "house", "museum", "stupa", "birthplace", "castle",
             "great", "gateway", "colosseum", "parthenon", "leaning", "arc", "christ"}
INSECTS = {"bee", "butterfly", "caterpillar"}
SOUND_VERBS = {  # concept -> how a person would name the recording
    "dog": "a dog barking", "cat": "a cat meowing", "cow": "a cow mooing", "rooster": "a rooster crowing",
    "duck": "a duck quacking", "drake": "a duck quacking", "sheep": "a sheep bleating",
    "lamb": "a lamb bleating", "horse": "a horse neighing", "pig": "a pig oinking",
    "lion": "a lion roaring", "tiger": "a tiger growling", "owl": "an owl hooting",
    "bee": "a bee buzzing", "frog": "a frog croaking", "hen": "a hen clucking",
    "chickens": "chickens clucking", "crow": "a crow cawing", "donkey": "a donkey braying",
    "goat": "a goat bleating", "elephant": "an elephant trumpeting", "wolf": "a wolf howling",
    "seagull": "a seagull calling", "turkey": "a turkey gobbling", "mosquito": "a mosquito buzzing",
    "hornet": "a hornet buzzing", "cuckoo": "a cuckoo calling", "blackbird": "a blackbird singing",
    "lark": "a lark singing", "bear": "a bear growling", "kettle": "a kettle boiling",
    "toilet": "a toilet flushing", "saw": "a saw cutting wood", "hammer": "a hammer hitting",
    "washing machine": "a washing machine running", "vacuum cleaner": "a vacuum cleaner",
    "fireworks": "fireworks exploding", "lightning bolt": "thunder", "firetruck": "a fire truck siren",
    "camera": "a camera shutter clicking",
}
VERB_CONCEPT = {v: k for k, v in reversed(SOUND_VERBS.items())}  # first key wins
TP_SOUND_SKIP = ("symbols/", "seasonal/hanukkah", "town/roadsigns", "town/flags", "military/",
                 "seasonal/christmas", "seasonal/halloween", "space/", "cartoon/")

# GCompris: photo folders inside its .rcc bundles, and the coarse label of each
GC_PHOTO_DIRS = {
    "categorization/resource/images/fishes": "fish",
    "categorization/resource/images/monuments": "building",
    "categorization/resource/images/tools": "tool",
    "categorization/resource/images/renewable": "power plant",
    "categorization/resource/images/others": "household object",
    "erase/resource": "animal",
    "explore_farm_animals/resource/animals": "animal",
    "explore_world_animals/resource/animals": "animal",
    "explore_monuments/resource": "building",
}
GC_SKIP = re.compile(r"texture|question|aboutkde|gcompris|tux|star\.", re.I)
GC_NAMES = {  # file-name concept -> caption, where the name alone reads badly
    "solar": "solar panels", "dam": "a dam", "windmill": "a windmill", "geothermal": "a geothermal power plant",
    "multimeter": "a multimeter", "measuring tape": "a measuring tape", "cutting tool": "a cutting tool",
    "side cutter": "side cutters", "plier": "pliers", "tweezer": "tweezers", "scissors": "scissors",
    "spray": "a spray bottle", "spoons": "spoons", "erasers": "erasers", "numbers": "number blocks",
    "alphabets": "alphabet blocks", "weighing machine": "a kitchen scale", "buffetset": "a buffet set",
    "blackslate": "a blackboard", "bulb": "a light bulb", "nail cutter": "a nail clipper",
    "monument": "a monument", "cathedral": "a cathedral", "burj": "the Burj Khalifa",
    "le musee": "the Louvre museum", "us capitol": "the United States Capitol",
    "empire state": "the Empire State Building", "great pyramid": "the Great Pyramid of Giza",
    "opera house": "the Sydney Opera House", "zimni palace": "the Winter Palace",
    "bayterek": "the Bayterek tower", "navajo": "Navajo National Monument",
    "meerkats": "meerkats", "camels": "camels", "swans": "swans", "spoonbills": "spoonbills",
}
GC_SOUNDS = {  # memory-sound / instruments / farm-animal recordings we can name without doubt
    "LRBark_1_LA_cut": "a dog barking", "LRBark_3_LA_cut": "a dog barking",
    "LRDoor_Open_2_LA": "a door opening", "LRApplauses_1_LA_cut": "applause",
    "LRRain_in_garden_01_LA_cut": "rain falling in a garden",
    "LRTrain_slowing_down_01_LA_cut": "a train slowing down",
    "LRStartAndStopCarEngine1LACut": "a car engine starting and stopping",
    "LRFrogsInPondDuringStormLACut": "frogs croaking in a pond during a storm",
    "LRHeart_beat_01_LA": "a heartbeat", "LRBuddhist_gong_05_LA": "a gong",
    "LRObject_falling_01_LA": "an object falling", "LRObject_falling_02_LA": "an object falling",
    "LRFactory_noise_01_LA": "factory noise", "LRFactory_noise_02_LA": "factory noise",
    "LRFactory_noise_03_LA": "factory noise", "LRFactory_noise_04_LA": "factory noise",
    "LRFactory_noise_05_LA": "factory noise", "LRFactory_noise_06_LA": "factory noise",
}


@dataclass
class Item:
    """One corpus entry before it is written: ``read`` returns the original file's bytes."""

    id: str
    modality: str  # image | speech | sound
    caption: str
    label: str
    concept: str
    source: str
    license: str
    suffix: str
    read: Callable[[], bytes] = field(repr=False)
    group: str = ""  # split group when it differs from the concept's head noun


def sound_concept(caption: str, fallback: str) -> str:
    """One concept per sound caption ("a duck quacking" -> duck, whether from a duck or a drake),
    so that equal captions always mean equal concepts."""
    return VERB_CONCEPT.get(caption, fallback)


def article(noun: str) -> str:
    return "an" if noun[:1].lower() in "aeiou" else "a"


def head_noun(concept: str) -> str:
    """The last word, for grouping near-duplicates ("red apple", "fuji apple" -> "apple")."""
    words = re.findall(r"[a-z]+", concept.lower())
    return words[-1] if words else concept.lower()


def split_name(stem: str) -> str:
    """``leaningTowerOfPisa2`` / ``sea_lion-1`` -> ``leaning tower of pisa`` / ``sea lion``."""
    stem = re.sub(r"(_by_.*|_mirror|-\d+|\d+[a-z]?)$", "", stem)
    stem = re.sub(r"([a-z])([A-Z])", r"\1 \2", stem).replace("_", " ").replace("-", " ")
    return re.sub(r"\d+", "", stem).strip().lower()


def _first_line(txt: Path) -> str:
    line = txt.read_text(encoding="utf-8", errors="replace").splitlines()[0].strip()
    return re.sub(r"[“”\"]", "", line).rstrip(".").strip()


def short_caption(text: str) -> str:
    """A stamp description cut to what a person would type: first clause, no trailing facts."""
    text = re.split(r"—|\. |!|\?| \(|, or ", text)[0].strip().rstrip(".")
    if len(text.split()) > 6 and re.search(r" (is|are) ", text):
        text = re.split(r" (?:is|are) ", text)[0]
    first = text.split(" ", 1)[0]
    if first.lower() in CAPTION_LEAD_WORDS:
        text = first.lower() + text[len(first):]
    return text


def _concept_of(caption: str) -> str:
    return re.sub(r"^(a|an|the|some)\s+", "", caption, flags=re.I).strip().lower()


def _tp_label(rel: str) -> str:
    for prefix in sorted(TP_LABELS, key=len, reverse=True):
        if rel.startswith(prefix):
            return TP_LABELS[prefix]
    return "object"


def _colours(png: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(png) as im:
        rgba = np.asarray(im.convert("RGBA"))  # (h, w, 4) uint8
        side = min(im.size)
    opaque = rgba[rgba[..., 3] > 200][:, :3].astype(np.int32) >> 3  # (n, 3) 5-bit channels
    return len(np.unique(opaque[:, 0] * 1024 + opaque[:, 1] * 32 + opaque[:, 2])), side


def tuxpaint(root: Path) -> list[Item]:
    """Photo stamps (caption = the stamp's English description), their recorded sound effects, and
    the English spoken descriptions (``*_desc.ogg``): speech that pairs with a photo."""
    base = root / "usr/share/tuxpaint/stamps"
    src, lic = f"{TUXPAINT[0]}@{TUXPAINT[1]}", "GPL-2+"
    items: list[Item] = []
    for png in sorted(base.rglob("*.png")):
        rel = png.relative_to(base).as_posix()
        txt = png.with_suffix(".txt")
        stem = png.stem
        if (any(d in rel for d in TP_DRAWING_DIRS) or stem in TP_DRAWINGS or stem.endswith("_mirror")
                or not txt.exists()):
            continue
        colours, side = _colours(png)
        if colours < TP_MIN_COLOURS or side < TP_MIN_SIDE:
            continue
        caption = TP_CAPTIONS.get(stem) or short_caption(_first_line(txt))
        items.append(Item(f"tp-img-{stem}", "image", caption, _tp_label(rel), _concept_of(caption),
                          src, lic, ".png", png.read_bytes))
    for ogg in sorted(base.rglob("*.ogg")):
        rel = ogg.relative_to(base).as_posix()
        txt = ogg.with_name(ogg.stem.removesuffix("_desc") + ".txt")
        if not txt.exists() or re.search(r"_desc_|_[a-z]{2}(_[a-zA-Z]{2})?\.ogg$", ogg.name):
            continue  # other languages' recordings
        base_stem = ogg.stem.removesuffix("_desc")
        concept = _concept_of(TP_CAPTIONS.get(base_stem) or short_caption(_first_line(txt)))
        if ogg.stem.endswith("_desc"):
            items.append(Item(f"tp-speech-{ogg.stem}", "speech", short_caption(_first_line(txt)),
                              _tp_label(rel), concept, src, lic, ".ogg", ogg.read_bytes))
        elif not rel.startswith(TP_SOUND_SKIP):
            name = split_name(ogg.stem)
            caption = SOUND_VERBS.get(name) or SOUND_VERBS.get(head_noun(concept)) or \
                f"the sound of {article(concept)} {concept}"
            items.append(Item(f"tp-snd-{ogg.stem}", "sound", caption, _tp_label(rel),
                              sound_concept(caption, concept), src, lic, ".ogg", ogg.read_bytes,
                              group=head_noun(concept)))
    return items


def monument_caption(title: str, concept: str) -> str:
    """``Eiffel Tower`` -> ``the Eiffel Tower``; ``Machu Picchu`` stays a bare name."""
    title = MONUMENT_NAMES.get(title) or GC_NAMES.get(concept) or title
    title = MONUMENT_NAMES.get(title, title)
    words = title.lower().split()
    if words[0] in ("the", "a", "an") or not (set(words[:1] + words[-1:]) & THE_WORDS):
        return title
    return "the " + title


def _qml_titles(files: dict[str, bytes]) -> dict[str, str]:
    """image file name -> ``title`` from GCompris explore boards (``{"title": qsTr("Jaguar") ...}``)."""
    out = {}
    for path, data in files.items():
        if not path.endswith(".qml"):
            continue
        for block in re.split(r"\n\s*\},?\s*\n", data.decode("utf-8", "replace")):
            title = re.search(r'"title"\s*:\s*qsTr\("([^"]+)"\)', block)
            for img in re.findall(r'/([\w-]+)\.(?:webp|jpg|png)"', block):
                if title:
                    out.setdefault(img, title.group(1))
    return out


def gcompris(root: Path) -> list[Item]:
    """Photographs (monuments, tools, fish, animals, energy) named by the activity's own titles or
    file names, and the recorded sounds of the memory-sound, instrument and farm-animal games."""
    rcc_dir = root / "usr/share/gcompris-qt/rcc"
    stanzas = read_copyright(root / "usr/share/doc/gcompris-qt-data/copyright")
    src = f"{GCOMPRIS[0]}@{GCOMPRIS[1]}"
    items: list[Item] = []
    for bundle in ("categorization", "erase", "explore_farm_animals", "explore_world_animals",
                   "explore_monuments", "memory-sound", "instruments"):
        files = rcc_files(rcc_dir / f"{bundle}.rcc")
        titles = _qml_titles(files)
        for path, data in sorted(files.items()):
            rel = path.split("/src/activities/", 1)[-1]
            folder, name = rel.rsplit("/", 1)
            stem, _, suffix = name.rpartition(".")
            lic = license_of(stanzas, "src/activities/" + rel)
            label = next((v for k, v in GC_PHOTO_DIRS.items() if folder.startswith(k)), None)
            if suffix in ("webp", "jpg", "png") and label and not GC_SKIP.search(name):
                concept = split_name(stem)
                if label == "building":
                    caption = monument_caption(titles.get(stem) or concept.title(), concept)
                elif stem in titles:
                    caption = f"{article(titles[stem])} {titles[stem].lower()}"
                else:
                    caption = GC_NAMES.get(concept) or f"{article(concept)} {concept}"
                if head_noun(caption) in INSECTS:
                    label = "insect"
                items.append(Item(f"gc-img-{bundle}-{stem}", "image", caption, label,
                                  _concept_of(caption), src, lic, "." + suffix, lambda d=data: d))
            elif suffix == "ogg" and (stem in GC_SOUNDS or bundle in ("instruments", "explore_farm_animals")):
                if stem in GC_SOUNDS:
                    caption, label = GC_SOUNDS[stem], "everyday sound"
                elif bundle == "instruments":
                    name = split_name(stem)
                    caption = f"{name if name.endswith('s') else article(name) + ' ' + name} playing"
                    label = "musical instrument"
                else:
                    caption, label = SOUND_VERBS.get(stem, f"the sound of {article(stem)} {stem}"), "animal"
                concept = sound_concept(caption, _concept_of(caption.removesuffix(" playing")))
                items.append(Item(f"gc-snd-{bundle}-{stem}", "sound", caption, label, concept, src,
                                  lic, ".ogg", lambda d=data: d))
    return items


def asterisk(root: Path, text_root: Path) -> list[Item]:
    """Telephone prompts read by one professional voice (8 kHz), with the published transcripts;
    bracketed entries (tones, silence) are not speech and are skipped."""
    folder = root / "usr/share/asterisk/sounds/en_US_f_Allison"
    listing = text_root / "usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz"
    transcripts = {}
    with gzip.open(listing, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            key, sep, text = line.partition(":")
            if sep and not line.startswith(";") and text.strip() and "[" not in text:
                transcripts[key.strip()] = text.strip()
    src = f"{ASTERISK[0]}@{ASTERISK[1]}"
    items = []
    for wav in sorted(folder.rglob("*.wav")):
        key = wav.relative_to(folder).with_suffix("").as_posix()
        if key in transcripts:
            text = transcripts[key]
            items.append(Item(f"ast-{key.replace('/', '-')}", "speech", text, key.split("/")[0]
                              if "/" in key else "prompt", _concept_of(text), src, "CC-BY-SA-3.0",
                              ".wav", wav.read_bytes))
    return items
