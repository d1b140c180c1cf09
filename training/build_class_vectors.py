"""Embed the class sentences of the pretrained offline tier once and ship them
(``aimemory/models/aimemory-base/class_vectors.safetensors``), so opening a store does not embed
1,500 sentences. Each entry keeps the sha256 of its sentences; the library re-embeds when they differ,
and ``tests/test_encoders_offline.py`` checks the shipped vectors against the text tower.

    python training/build_class_vectors.py
"""

from __future__ import annotations

from aimemory.encoders.labels import embed_classes, imagenet_sentences, read_class_texts, write_shipped_vectors
from aimemory.encoders.offline import MODEL_DIR
from aimemory.encoders.sentence import SentenceEncoder
from aimemory.encoders.sound_labels import class_sentences


def main() -> None:
    text = SentenceEncoder.from_pretrained("auto")
    entries = {}
    imagenet = imagenet_sentences(read_class_texts(MODEL_DIR / "labels.json"))
    entries["imagenet"] = (imagenet, embed_classes(imagenet, text.embed))
    try:
        from aimemory.encoders.sound_tagger import SoundTagger

        tagger = SoundTagger.from_pretrained("auto")
    except Exception as exc:  # the tagger's weight package is optional
        print(f"no sound tagger ({exc}); shipping the image classes only")
    else:
        sounds = class_sentences(tagger.label_names)
        entries[f"audioset-{tagger.model_id}"] = (sounds, embed_classes(sounds, text.embed))
    write_shipped_vectors(entries)
    print("wrote", {k: v[1].shape for k, v in entries.items()})


if __name__ == "__main__":
    main()
