# One image for the api, ui and llm services (docker-compose.yml picks the command).
FROM python:3.11-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake git \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY scripts ./scripts
COPY rag ./rag
COPY indexer ./indexer
COPY cli ./cli
COPY api ./api
COPY ui ./ui
COPY eval ./eval
COPY connect ./connect
# The CPU build of torch (from PyTorch's CPU index here; a local wheel on the dev machines). llama.cpp
# with AVX2 kernels, since an image runs on CPUs other than the one that built it: build with
# --build-arg RAG_LLAMA_CPU=native for AVX-512 where the image stays on such CPUs.
ARG RAG_LLAMA_CPU=avx2
ENV TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu \
    RAG_LLAMA_CPU=$RAG_LLAMA_CPU \
    HF_HUB_OFFLINE=1 \
    PATH=/app/.venv/bin:$PATH
RUN bash scripts/install.sh && rm -rf /root/.cache/pip
RUN useradd --create-home rag && mkdir -p /data && chown rag /data
USER rag
EXPOSE 8000 8501 8080
CMD ["rag", "serve", "--index", "/data/index", "--host", "0.0.0.0", "--port", "8000"]
