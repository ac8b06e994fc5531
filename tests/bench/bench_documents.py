"""Documents: a 20-page PDF parsed into text — time and peak memory.

    .venv/bin/python -m tests.bench.bench_documents [--runs 20] [--pages 20]

The PDF is written here with fpdf2 (about 2,700 characters of text per page, Helvetica),
then parsed by `tools.documents.extract_text` as the worker does for a customer's PDF:
once reading every page, and once with the default budget (12,000 characters, which
stops after the pages that fill it). Time is wall time per parse, in this process;
memory is the peak of Python allocations during one parse (tracemalloc, measured in a
separate pass because tracing slows the parse) and the process's peak RSS growth.
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc

from tests.bench.common import (
    measuring,
    ms,
    percentile,
    print_header,
    print_table,
    tune_benchmark_process,
)
from tests.support_media import make_pdf
from tools.documents import extract_text

DEFAULT_BUDGET = 12_000
SENTENCE = (
    "Rental {n}: city bike, helmet and lock, collected at the Kigali shop, returned by "
    "18:00; late returns are charged per started hour. "
)


def sample_pdf(pages: int) -> bytes:
    texts = []
    for page in range(1, pages + 1):
        lines = [f"INVOICE INV-2041 - page {page} of {pages}"]
        lines += [SENTENCE.format(n=page * 100 + i) for i in range(18)]
        texts.append("\n".join(lines))
    return make_pdf(texts)


def time_parse(pdf: bytes, max_chars: int, runs: int) -> tuple[list[float], int, int]:
    """(seconds per parse, characters returned, pages read)."""
    result = extract_text(pdf, "pdf", max_chars=max_chars, max_pages=50)
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        extract_text(pdf, "pdf", max_chars=max_chars, max_pages=50)
        samples.append(time.perf_counter() - started)
    return samples, len(result.text), result.pages_read or 0


def peak_python_bytes(pdf: bytes, max_chars: int) -> int:
    tracemalloc.start()
    try:
        extract_text(pdf, "pdf", max_chars=max_chars, max_pages=50)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--pages", type=int, default=20)
    args = parser.parse_args()
    tune_benchmark_process()
    pdf = sample_pdf(args.pages)
    print_header(
        f"Documents: a {args.pages}-page PDF parsed into text",
        [
            f"PDF written by fpdf2: {len(pdf) / 1024:.0f} KiB, {args.pages} pages;"
            " parsed by pypdf through tools.documents.extract_text",
            f"{args.runs} sequential parses per row, in this process",
        ],
    )
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rows = []
    for label, budget in (("every page", 10_000_000), ("default budget", DEFAULT_BUDGET)):
        with measuring():
            samples, chars, pages_read = time_parse(pdf, budget, args.runs)
        peak = peak_python_bytes(pdf, budget)
        rows.append(
            [
                label,
                f"{pages_read}/{args.pages}",
                chars,
                ms(percentile(samples, 50)),
                ms(percentile(samples, 95)),
                f"{peak / 1024 / 1024:.1f}",
            ]
        )
    rss_growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    print_table(["parse", "pages read", "chars", "p50 ms", "p95 ms", "peak Python MiB"], rows)
    print(f"peak RSS growth of this process over all parses: {rss_growth:.1f} MiB\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
