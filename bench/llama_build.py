"""Raw speed of the llama.cpp build this environment imports: prompt processing and generation tokens/s of
the bundled 1.5B model, 2 threads, n_batch 512, with the kernels the build was compiled with.

    python -m bench.llama_build [--name avx512] [--tokens 600] [--repeats 4]

scripts/install.sh compiles llama.cpp for the installing CPU (scripts/llama_cpu.py). To compare builds on
one machine, install another build's wheel beside the environment's and put it first on the path:

    CMAKE_ARGS="$(RAG_LLAMA_CPU=avx2 python3 scripts/llama_cpu.py | cut -d' ' -f2-)" \\
        .venv/bin/pip wheel --no-deps -w /tmp/avx2 llama-cpp-python==0.3.36
    .venv/bin/pip install --no-deps --target /tmp/llama-avx2 /tmp/avx2/*.whl
    PYTHONPATH=/tmp/llama-avx2 .venv/bin/python -m bench.llama_build --name avx2

The prompt is the first tokens of docs/architecture.md, processed from an empty cache each repeat (the
first repeat is a warm-up); generation is greedy, one token at a time. Prints a table and writes
bench/results/llama_build_NAME.json.
"""

from __future__ import annotations

import argparse
import statistics
import time

from bench.common import ROOT, machine, print_table, write_result
from rag.generate.bundled import bundled_model_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="installed", help="the build's label: bench/results/llama_build_NAME.json")
    parser.add_argument("--tokens", type=int, default=600, help="prompt tokens (a question with its evidence: ~950)")
    parser.add_argument("--generate", type=int, default=16, help="tokens generated after each prompt")
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args()

    import llama_cpp

    llm = llama_cpp.Llama(
        model_path=bundled_model_path("qwen2.5-coder-1.5b"),
        n_ctx=2048,
        n_threads=2,
        n_threads_batch=2,
        n_batch=512,
        verbose=False,
    )
    text = (ROOT / "docs" / "architecture.md").read_text("utf-8")
    prompt = llm.tokenize(text.encode("utf-8"), add_bos=False)[: args.tokens]
    prompt_rates: list[float] = []
    generate_rates: list[float] = []
    for _ in range(args.repeats):
        llm.reset()
        start = time.perf_counter()
        llm.eval(prompt)
        prompt_rates.append(len(prompt) / (time.perf_counter() - start))
        start = time.perf_counter()
        for _ in range(args.generate):
            llm.eval([llm.sample(temp=0.0)])
        generate_rates.append(args.generate / (time.perf_counter() - start))
    system = llama_cpp.llama_print_system_info().decode().strip()
    row = {
        "build": args.name,
        "prompt_tokens": len(prompt),
        "prompt_tokens_per_s": round(statistics.median(prompt_rates[1:] or prompt_rates), 1),
        "generated_tokens_per_s": round(statistics.median(generate_rates[1:] or generate_rates), 1),
    }
    print_table([row], list(row))
    print(system)
    write_result(
        f"llama_build_{args.name}",
        {
            "machine": machine(),
            "llama_cpp_system_info": system,
            "rows": [row],
            "prompt_tokens_per_s_each": [round(r, 1) for r in prompt_rates],
            "generated_tokens_per_s_each": [round(r, 1) for r in generate_rates],
        },
    )


if __name__ == "__main__":
    main()
