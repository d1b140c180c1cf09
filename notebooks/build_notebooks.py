"""Writes ``01_quickstart.ipynb`` and ``02_explore.ipynb`` (without outputs) from the cells below.

    python notebooks/build_notebooks.py

Edit the cells here, not the .ipynb files, so the notebooks stay reviewable as code.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SETUP = '''\
import tempfile
from pathlib import Path

import aimemory
from aimemory import MemoryStore

# a throwaway store; the built-in model runs offline
store_dir = Path(tempfile.mkdtemp(prefix="aimemory-notebook-"))
store = MemoryStore(store_dir / "memory", model="aimemory-mini")

MEDIA = {".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp",   # images
         ".wav", ".flac", ".ogg", ".mp3", ".m4a",             # audio
         ".txt"}                                              # text
samples_dir = Path(aimemory.__file__).parent / "samples"
samples = sorted(p for p in samples_dir.rglob("*")
                 if p.is_file() and p.suffix.lower() in MEDIA and not p.name.startswith("."))
print(f"{len(samples)} sample files in {samples_dir}")'''

REMEMBER = '''\
stored = store.remember_many(samples, errors="skip", metadata={"tags": ["sample"]})
for index, item, error in stored.skipped:
    print("skipped", item, "-", error)
from collections import Counter
print(Counter(m.modality for m in stored), "->", store)'''

QUICKSTART = [
    new_markdown_cell("# aimemory quickstart\n\n"
                      "One memory for images, audio and text: `remember` anything, `recall` it with "
                      "anything. This notebook uses the built-in offline model `aimemory-mini` and the "
                      "sample files bundled with the package."),
    new_code_cell(SETUP),
    new_markdown_cell("## Remember\n\n`remember_many` embeds files in batches; a file that is already "
                      "stored is recognised by its content hash and not embedded again."),
    new_code_cell(REMEMBER),
    new_code_cell('''\
note = store.remember("Remember to water the plants on Friday", metadata={"tags": ["todo"]})
note'''),
    new_markdown_cell("## Recall across modalities\n\nA text query finds images, sounds and notes in one "
                      "ranking. Results render as a table with thumbnails, audio players and scores."),
    new_code_cell('''\
images = [m for m in stored if m.modality == "image"]
sounds = [m for m in stored if m.modality == "audio"]
# describe the first sample image by its file name, e.g. "red_bicycle.jpg" -> "a photo of a red bicycle"
subject = Path(images[0].source).stem.replace("_", " ").replace("-", " ") if images else "a cat"
query = f"a photo of a {subject}"
print(query)
store.recall(query, k=5)'''),
    new_code_cell('''\
# text -> images only
store.recall(query, k=3, modality="image")'''),
    new_code_cell('''\
# image -> everything: query with a file
store.recall(Path(images[0].source), k=4) if images else "no sample images"'''),
    new_code_cell('''\
# audio -> everything
store.recall(Path(sounds[0].source), k=4) if sounds else "no sample audio"'''),
    new_markdown_cell("## One hit, one memory"),
    new_code_cell('''\
hits = store.recall("plants", k=3, where={"tags": "todo"})
hits[0]'''),
    new_code_cell('''\
memory = store.get(hits[0].id)
print(memory.id, memory.modality, memory.tags, memory.created_at)
memory'''),
    new_markdown_cell("## As tables\n\n`Hits.to_pandas()` for one result list, `MemoryStore.to_pandas()` for "
                      "the whole store (add `vectors=True` for embeddings)."),
    new_code_cell("hits.to_pandas()"),
    new_code_cell('''\
df = store.to_pandas()
df[["id", "modality", "source", "tags", "n_views", "created_at"]]'''),
    new_code_cell('''\
store.close()
import shutil
shutil.rmtree(store_dir)'''),
]

EXPLORE = [
    new_markdown_cell("# Exploring the memory space\n\n"
                      "Every memory is a vector in one space, whatever its modality. Here: a 2-D map of "
                      "the space (PCA) coloured by modality, and cross-modal queries side by side."),
    new_code_cell(SETUP),
    new_code_cell(REMEMBER),
    new_code_cell('''\
for text in ["a dog playing in the park", "birds singing in the morning", "a red sports car",
             "rain falling on a window", "a bowl of fresh fruit"]:
    store.remember(text, metadata={"tags": ["note"]})
df = store.to_pandas(vectors=True)
df[["modality", "source", "text", "n_views"]].head(10)'''),
    new_markdown_cell("## A map of the space\n\nPCA with numpy's SVD: centre the vectors, keep the two "
                      "directions of largest variance. Stars are text queries projected into the same map."),
    new_code_cell('''\
import numpy as np
import matplotlib.pyplot as plt

X = np.stack(df["vector"].to_list())
mean = X.mean(axis=0)
_, S, Vt = np.linalg.svd(X - mean, full_matrices=False)
P = (X - mean) @ Vt[:2].T
explained = (S[:2] ** 2).sum() / (S ** 2).sum()

queries = ["an animal", "music", "a vehicle"]
Q = (np.stack([store.embed(q) for q in queries]) - mean) @ Vt[:2].T

colours = {"image": "tab:purple", "audio": "tab:blue", "text": "tab:green"}
fig, ax = plt.subplots(figsize=(8, 6))
for modality, colour in colours.items():
    sel = (df["modality"] == modality).to_numpy()
    if sel.any():
        ax.scatter(P[sel, 0], P[sel, 1], c=colour, label=modality, alpha=0.75, s=40)
for (x, y), name in zip(P, df["source"].fillna(df["text"]).astype(str)):
    ax.annotate(Path(name).name[:24], (x, y), fontsize=7, alpha=0.6)
ax.scatter(Q[:, 0], Q[:, 1], marker="*", s=250, c="black", label="queries")
for (x, y), q in zip(Q, queries):
    ax.annotate(q, (x, y), fontsize=9, weight="bold")
ax.set_title(f"memories in 2-D (PCA, {explained:.0%} of the variance)")
ax.legend()
plt.show()'''),
    new_markdown_cell("## Cross-modal queries side by side\n\nThe same store asked with a text, an image and "
                      "a sound."),
    new_code_cell('''\
from IPython.display import HTML
from aimemory.display import esc, hits_html

images = df.loc[df["modality"] == "image", "source"].tolist()
sounds = df.loc[df["modality"] == "audio", "source"].tolist()
asks = [("text: " + queries[0], queries[0])]
if images:
    asks.append(("image: " + Path(images[0]).name, Path(images[0])))
if sounds:
    asks.append(("audio: " + Path(sounds[0]).name, Path(sounds[0])))
columns = "".join(f'<td style="vertical-align:top"><h4>{esc(title)}</h4>{hits_html(store.recall(q, k=3))}</td>'
                  for title, q in asks)
HTML(f"<table><tr>{columns}</tr></table>")'''),
    new_markdown_cell("## Which modality answers which query?\n\nScores of the best hit per modality for a few "
                      "text queries: a quick look at how well the shared space lines modalities up."),
    new_code_cell('''\
import pandas as pd

rows = []
for q in queries + ["a photo", "a voice"]:
    row = {"query": q}
    for modality in colours:
        hits = store.recall(q, k=1, modality=modality)
        row[modality] = round(hits[0].score, 3) if hits else None
    rows.append(row)
pd.DataFrame(rows).set_index("query")'''),
    new_code_cell('''\
store.close()
import shutil
shutil.rmtree(store_dir)'''),
]


def write(cells, name: str) -> Path:
    nb = new_notebook(cells=cells, metadata={
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    })
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i:02d}"  # stable ids: regenerating does not churn the diff
    nbformat.validate(nb)
    path = HERE / name
    nbformat.write(nb, path)
    return path


if __name__ == "__main__":
    for cells, name in ((QUICKSTART, "01_quickstart.ipynb"), (EXPLORE, "02_explore.ipynb")):
        print("wrote", write(cells, name))
