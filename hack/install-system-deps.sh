#!/usr/bin/env bash
# Installs what a fresh machine lacks for the build, the local stack and the tests:
# PostgreSQL's server (Debian), openssl, util-linux (unshare), Go >= 1.26 for the control
# plane build, chromium (headless: the screenshot test of `guideline-client show --html`);
# buildah, runc and debootstrap for `make image` (images built from Debian packages, no
# registry); the CNI plugins, iptables and ipset for the real local node (GUIDELINE_NODE=real);
# poppler-utils (pdftotext: the independent extractor the PDF tests compare with), pandoc and
# img2pdf (the DOCX tests' reference and tests/data/guidelines/make-documents.sh).
# Idempotent and quick when everything is present.
set -euo pipefail
need=()
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)
command -v openssl >/dev/null || need+=(openssl)
command -v unshare >/dev/null || need+=(util-linux)
command -v runuser >/dev/null || need+=(util-linux)
command -v make >/dev/null || need+=(make)
command -v curl >/dev/null || need+=(curl)
command -v go >/dev/null || need+=(golang-go)
command -v python3 >/dev/null || need+=(python3 python3-venv)
command -v chromium >/dev/null || need+=(chromium)
command -v buildah >/dev/null || need+=(buildah)
command -v runc >/dev/null || need+=(runc)
command -v debootstrap >/dev/null || need+=(debootstrap)
[[ -x /usr/lib/cni/bridge ]] || need+=(containernetworking-plugins)
command -v iptables >/dev/null || need+=(iptables)
# kube-router's network-policy controller (the real node's NetworkPolicy enforcement).
command -v ipset >/dev/null || need+=(ipset)
command -v pdftotext >/dev/null || need+=(poppler-utils)
command -v pandoc >/dev/null || need+=(pandoc)
command -v img2pdf >/dev/null || need+=(img2pdf)
if ((${#need[@]})); then
  echo "[deps] apt-get install ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# PostgreSQL's packaging may start a cluster on 5432; the project runs its own instances.
id postgres >/dev/null 2>&1 || useradd --system --home /var/lib/postgresql --shell /bin/bash postgres
echo "[deps] system dependencies present"
