#!/usr/bin/env bash
# Tesseract's Korean and English language data for OCR (ingest/ocr.py; the engine itself is
# the tesserocr wheel). Installed with apt-get when this runs as root on Debian/Ubuntu and
# the data is missing; otherwise a note: the OCR tests then skip, saying why (CI sets
# RAGSERVE_REQUIRE_OCR=1, so there they fail instead).
set -euo pipefail
for dir in /usr/share/tesseract-ocr/*/tessdata /usr/share/tessdata; do
  if [ -f "$dir/kor.traineddata" ] && [ -f "$dir/eng.traineddata" ]; then
    exit 0
  fi
done
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing Tesseract's language data (tesseract-ocr-kor, tesseract-ocr-eng)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    tesseract-ocr-eng tesseract-ocr-kor >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
         --no-install-recommends tesseract-ocr-eng tesseract-ocr-kor >/dev/null; } \
    || echo "note: apt-get could not install them: OCR is off and its tests skip" >&2
else
  echo "note: no Tesseract language data for kor+eng: OCR is off and its tests skip" \
       "(apt-get install tesseract-ocr-kor tesseract-ocr-eng)" >&2
fi
