# One image for every Stamen service; compose.yaml picks the command.
#
# Built offline: `make image` puts every wheel the image needs in build/wheelhouse on the
# host, and this build installs from there alone (pip --no-index): nothing inside the
# build reaches the network, as an air-gapped site needs. Build arguments:
#   BASE    an image with python3 (3.11, with venv) and openssl: python:3.11-slim, or the
#           stand-in that scripts/base-image.sh makes with debootstrap when no registry
#           is reachable; for GPUs, a CUDA runtime image (see Dockerfile.cuda)
#   EXTRAS  the project's extras to install: "torch" for the PyTorch image (stamen:torch;
#           the wheelhouse then holds torch, the CPU build unless it was made for CUDA)
ARG BASE=python:3.11-slim

FROM ${BASE} AS install
ARG EXTRAS=""
# The label lets scripts/build-image.sh remove this stage's image once it is untagged.
LABEL org.stamen.stage=install
COPY build/wheelhouse /wheels
# scikit-learn: the examples' data (digits) ships with it; no download at run time.
RUN python3 -m venv /opt/stamen \
    && /opt/stamen/bin/pip install --no-index --find-links /wheels --no-cache-dir \
        "stamen${EXTRAS:+[$EXTRAS]}" scikit-learn

FROM ${BASE}
ARG BASE
LABEL org.stamen.base=${BASE} org.stamen.stage=final
RUN command -v openssl >/dev/null \
    || { echo "the base image has no openssl (scripts/make-certs.sh needs it)" >&2; exit 1; }
COPY --from=install /opt/stamen /opt/stamen
ENV PATH=/opt/stamen/bin:$PATH PYTHONUNBUFFERED=1

# Run as an ordinary user. Every directory a volume is mounted on belongs to it, so a
# fresh named volume (which takes its mount point's owner and mode) is writable by it:
# /pki holds the SuperLink's private keys (700), /operator the operator token that the
# SuperLink and the ServerApp share (700), /ca the CA certificate everyone reads,
# /state the SuperLink's database.
RUN useradd --create-home --uid 1000 stamen \
    && install -d -o stamen -g stamen -m 700 /pki /operator \
    && install -d -o stamen -g stamen -m 755 /ca /state
WORKDIR /app
COPY scripts scripts
COPY examples examples
USER stamen
