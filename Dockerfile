# One image for every Stamen service; compose.yaml picks the command.
FROM python:3.11-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends openssl \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY protos protos
COPY shared shared
COPY services services
# scikit-learn: the examples' data (digits) ships with it; no download at run time.
RUN pip install --no-cache-dir . scikit-learn

COPY scripts scripts
COPY examples examples

# Run as an ordinary user; state and certificates live on volumes.
RUN useradd --create-home stamen && mkdir -p /certs /state && chown stamen /certs /state
USER stamen
