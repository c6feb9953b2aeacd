#!/usr/bin/env python3
"""The kernel's failure modes a reader meets, each answered with a clear message, never a hang.

Starts one isotropy-lab kernel (as the lab does: scripts/kernel.sh, in notebooks/, so with the
support crate and its prelude) with its own extraction cache and drives it through Jupyter's
messaging protocol, as a front-end would:

1. A model name that does not exist: the cell fails with an error naming it.
2. Edited parameters with impossible values: a layer past the last, D at least the dimension,
   k larger than the rows. Each cell fails with an error naming the value.
3. A cell interrupted mid-extraction (once its first progress line is out): the kernel answers the
   interrupt within seconds, the cache holds no entry for that extraction, and running the cell
   again extracts and caches it (the next run then reads the cache).
4. The kernel restarted mid-fine-tune (chapter 06's live run, after its first checkpoint): the
   same cell in the new kernel resumes from the checkpoint ("resuming … at step N", N > 0) and
   finishes.

Prints what each step saw and how long it took. Exit status 1 when a check fails.

Usage: .venv/bin/python scripts/check_kernel_failures.py [--out DIR]
"""
import argparse
import os
import queue
import re
import shutil
import sys
import time
from pathlib import Path

from jupyter_client.manager import KernelManager

ROOT = Path(__file__).resolve().parent.parent


class Kernel:
    """One isotropy-lab kernel and a client on it."""

    def __init__(self, env):
        self.manager = KernelManager(kernel_name="isotropy-lab")
        self.manager.start_kernel(cwd=str(ROOT / "notebooks"), env=env)
        self.client = self.manager.client()
        self.client.start_channels()
        # A cold build folder builds every dependency first.
        self.client.wait_for_ready(timeout=3600)

    def run(self, code, timeout=600, until=None):
        """Executes `code`; returns (stdout, stderr and error text, seconds). With `until` (a
        callable on the stdout so far), returns as soon as it is true, leaving the cell running."""
        start = time.monotonic()
        msg_id = self.client.execute(code)
        out, err = [], []
        while True:
            left = timeout - (time.monotonic() - start)
            if left <= 0:
                raise AssertionError(f"no answer within {timeout} s to:\n{code}")
            try:
                msg = self.client.get_iopub_msg(timeout=min(left, 5))
            except queue.Empty:
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                (out if content["name"] == "stdout" else err).append(content["text"])
            elif kind == "error":
                err.append(f"{content['ename']}: {content['evalue']}")
            elif kind == "status" and content["execution_state"] == "idle":
                took = time.monotonic() - start
                self.drain(msg_id, out, err)
                return "".join(out), "".join(err), took
            if until is not None and until("".join(out)):
                return "".join(out), "".join(err), time.monotonic() - start

    def drain(self, msg_id, out, err, quiet=1.0):
        """Collects the cell's streams that arrive after its idle status: evcxr_jupyter forwards
        the child process's stdout and stderr from a thread of its own, so an error printed by `?`
        can come after the kernel reported idle. Stops after `quiet` seconds without one."""
        while True:
            try:
                msg = self.client.get_iopub_msg(timeout=quiet)
            except queue.Empty:
                return
            if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream":
                content = msg["content"]
                (out if content["name"] == "stdout" else err).append(content["text"])

    def wait_idle(self, timeout=120):
        """Reads messages until the kernel reports idle (after an interrupt)."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            try:
                msg = self.client.get_iopub_msg(timeout=5)
            except queue.Empty:
                continue
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return time.monotonic() - start
        raise AssertionError(f"the kernel did not become idle within {timeout} s")

    def stop(self):
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


SETUP = """
let model = Model::load("minilm")?;
let options = ExtractOptions { limit: Some(16), ..ExtractOptions::default() };
let emb = Embeddings::extract(&model, &Source::glue(Task::Sst2, Split::Dev), &options)?;
let last = *emb.layers.last().unwrap();
println!("{} tokens, {} dimensions, hidden states {:?}", emb.num_tokens(),
    emb.layer(last)?.cols(), emb.layers);
"""

# (what a reader edits, the cell, what its error must name)
IMPOSSIBLE = [
    ("a model name that does not exist", 'let m = Model::load("no-such-model")?;', "no-such-model"),
    ("a layer index past the last", "let width = emb.layer(99)?.cols();", "99"),
    ("D at least the dimension",
     "let w = Method::Global { d: 4096 }.apply(emb.layer(last)?, 0)?;", "4096"),
    ("k larger than the rows",
     "let w = Method::ClusterZeroMean { k: 100000 }.apply(emb.layer(last)?, 0)?;", "100000"),
]

# Long enough to be interrupted after its first progress line (one every 5 s), with room to spare:
# on a 2-core machine where 3,000 sentences (this cell's size until 2026-12-05) took 3.8 s and
# finished before any progress line (the interrupt then met an idle kernel), 10,000 reached 65 %
# in 5 s. The last hidden state only, to keep the entry small.
EXTRACT = """
let big = ExtractOptions { limit: Some(20000), layers: Some(vec![6]),
    ..ExtractOptions::default() };
let train = Embeddings::extract(&model, &Source::glue(Task::Sst2, Split::Train), &big)?;
println!("extracted {} tokens", train.num_tokens());
"""

FINETUNE = """
let run_dir = std::path::PathBuf::from(RUN_DIR);
let opts = FinetuneOptions {
    budget: Budget::Steps(40),
    eval_every: 10,
    batch_size: 16,
    train_limit: Some(640),
    dev_limit: Some(100),
    ..FinetuneOptions::default_for(Task::Sst2, "minilm")
};
let report = finetune(&opts, &run_dir)?;
println!("finished at step {}", report.steps);
"""


def entries(cache):
    """The extraction cache's finished entries and its temporary folders."""
    folder = cache / "extract"
    names = [p.name for p in folder.iterdir()] if folder.is_dir() else []
    return [n for n in names if not n.startswith(".")], [n for n in names if n.startswith(".")]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "target" / "kernel-failures"))
    args = ap.parse_args()
    out = Path(args.out).resolve()
    shutil.rmtree(out, ignore_errors=True)
    cache = out / "cache"
    cache.mkdir(parents=True)
    env = dict(os.environ, ISOLAB_CACHE=str(cache))
    found = []
    kernel = Kernel(env)
    try:
        stdout, stderr, took = kernel.run(SETUP)
        if stderr:
            sys.exit(f"the setup cell failed: {stderr}")
        print(f"setup: {stdout.strip().splitlines()[-1]} ({took:.1f} s)", flush=True)

        for what, cell, named in IMPOSSIBLE:
            stdout, stderr, took = kernel.run(cell, timeout=300)
            message = stderr.strip().replace("\n", " ")
            if named not in stderr:
                found.append(f"{what}: the error does not name {named!r}: {message[:300]!r}")
            if "panicked" in stderr:
                found.append(f"{what}: the library panicked: {message[:300]!r}")
            print(f"{what}: {message[:200]} ({took:.1f} s)", flush=True)

        before, _ = entries(cache)
        stdout, _, took = kernel.run(EXTRACT, until=lambda s: re.search(r"\d+/\d+ \(\d+%", s))
        if "extracted" in stdout:
            sys.exit(f"the extraction finished in {took:.1f} s, before its first progress line, so "
                     "there was nothing to interrupt: make EXTRACT's limit larger")
        sent = time.monotonic()
        kernel.manager.interrupt_kernel()
        answered = kernel.wait_idle()
        done, temporary = entries(cache)
        print(f"interrupted mid-extraction {took:.1f} s after the run began ({stdout.strip()!r}); "
              f"the kernel answered in {answered:.1f} s; cache entries {len(before)} before, "
              f"{len(done)} after, temporary {temporary}", flush=True)
        if done != before:
            found.append(f"the interrupted extraction left a cache entry: {sorted(set(done) - set(before))}")
        # The interrupt ends the kernel's process: what earlier cells defined is gone.
        stdout, stderr, took = kernel.run(SETUP + EXTRACT)
        done, temporary = entries(cache)
        if stderr or "extracted" not in stdout or len(done) != len(before) + 1 or temporary:
            found.append(f"running the interrupted cell again: stderr {stderr[:300]!r}, "
                         f"entries {done}, temporary {temporary}")
        print(f"the cell again: {stdout.strip().splitlines()[-1]!r}, cached ({took:.1f} s)", flush=True)
        stdout, _, took = kernel.run(EXTRACT)
        if "loaded from the cache" not in stdout:
            found.append(f"a third run did not read the cache: {stdout[:300]!r}")
        print(f"and once more: read from the cache ({took:.1f} s)", flush=True)

        run_dir = out / "live-run"
        cell = FINETUNE.replace("RUN_DIR", f'"{run_dir}"')
        stdout, _, took = kernel.run(
            cell, until=lambda _: (run_dir / "checkpoint" / "state.json").exists(), timeout=1200)
        print(f"fine-tune: first checkpoint after {took:.1f} s; restarting the kernel", flush=True)
        sent = time.monotonic()
        kernel.manager.restart_kernel(now=True)
        kernel.client.wait_for_ready(timeout=600)
        print(f"the kernel restarted in {time.monotonic() - sent:.1f} s", flush=True)
        stdout, stderr, took = kernel.run(cell, timeout=1200)
        resumed = re.search(r"resuming .* at step (\d+)", stdout)
        if not resumed or int(resumed.group(1)) == 0 or "finished at step 40" not in stdout or stderr:
            found.append(f"the fine-tune did not resume and finish: stdout {stdout[-500:]!r}, "
                         f"stderr {stderr[-300:]!r}")
        else:
            print(f"fine-tune: resumed at step {resumed.group(1)} and finished ({took:.1f} s)", flush=True)
    finally:
        kernel.stop()
    if found:
        print("\n".join(found))
        sys.exit(1)
    print("the kernel's failure modes: each answered with a clear message, nothing half-written")


if __name__ == "__main__":
    main()
