"""The key numbers a chapter records for its tests (the crate's `key_number`: a line `key number
NAME = VALUE` on stdout, printed only when ISOLAB_KEY_NUMBERS=1), read back from an executed
notebook, moved out of its outputs into its metadata (`metadata.isolab.key_numbers`), and read from
there. Shared by run_notebooks.py and key_ranges.py; standard library only.
"""
import re

KEY = re.compile(r"^key number (\S+) = (\S+)\n?", re.MULTILINE)


def text_of(value):
    """A notebook field stored as one string or as a list of lines."""
    return "".join(value) if isinstance(value, list) else value


def take_key_numbers(nb):
    """Removes the key-number lines from a notebook's stream outputs (dropping outputs left
    empty) and returns the numbers by name; also stores them in the notebook's metadata."""
    keys = {}
    for cell in nb["cells"]:
        kept = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stdout":
                text = text_of(out["text"])
                for name, value in KEY.findall(text):
                    keys[name] = float(value)
                out["text"] = KEY.sub("", text)
                if not out["text"]:
                    continue
            kept.append(out)
        if "outputs" in cell:
            cell["outputs"] = kept
    nb.setdefault("metadata", {}).setdefault("isolab", {})["key_numbers"] = keys
    return keys


def key_numbers(nb):
    """The key numbers an executed notebook (a dict as json.load or nbformat reads it) holds in
    its metadata, by name."""
    return dict(nb.get("metadata", {}).get("isolab", {}).get("key_numbers", {}))
