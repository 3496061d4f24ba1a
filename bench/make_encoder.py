"""Write a sentence-transformers folder of an XLM-RoBERTa encoder's shape, random weights.

    python bench/make_encoder.py --preset e5-base --out DIR      # multilingual-e5-base's shape
    python bench/make_encoder.py --preset tiny --out DIR         # what the tests use

The real multilingual checkpoints cannot be downloaded on a machine without the hub; this
gives their exact shape (vocabulary, layers, widths, positions) for timing, and a small one
whose arithmetic the tests compare with sentence-transformers'. The tokenizer is a
SentencePiece-style Unigram (NFKC, Metaspace, `<s> $A </s>`, XLM-R's special ids 0-4)
trained on a few English and Korean sentences; its vocabulary is small, the embedding
matrix has the preset's size. Saved the way the installed sentence-transformers saves.
"""

from __future__ import annotations

import argparse
from pathlib import Path

PRESETS = {
    # hidden, layers, heads, intermediate, positions (after the padding offset), vocabulary
    "tiny": (64, 2, 4, 128, 64, None),
    "e5-small": (384, 12, 12, 1536, 512, 250037),
    "e5-base": (768, 12, 12, 3072, 512, 250002),
}
CORPUS = [
    "What was the budget of Project Falcon in 2025, and who manages it?",
    "  총 계약금액은 5억 2천만원(부가가치세 포함)이며, 공사 기간은 2024년 4월 1일부터이다.  ",
    "검색 결과는 출처와 함께 답변에 표시됩니다. 보고서의 예산과 담당자를 확인하십시오.",
    "River management, levees, sensors and warning systems across the northern basin.",
    "The committee reviewed the maintenance records of the northern river levees.",
    "MiXeD CaSe and punctuation!!! 1,234.56 — ünïcödé",
]


def write(out: Path, preset: str = "tiny", seed: int = 0) -> Path:
    import torch
    from sentence_transformers import SentenceTransformer, models
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors, trainers
    from tokenizers.models import Unigram
    from transformers import PreTrainedTokenizerFast, XLMRobertaConfig, XLMRobertaModel

    hidden, layers, heads, inner, positions, vocab = PRESETS[preset]
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # XLM-R's ids 0-4
    tok = Tokenizer(Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=300, special_tokens=specials, unk_token="<unk>")
    tok.train_from_iterator(CORPUS * 8, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    hf = out / "hf"
    PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        cls_token="<s>",
        sep_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token="<mask>",
        model_max_length=positions,
    ).save_pretrained(hf)
    config = XLMRobertaConfig(
        vocab_size=vocab or tok.get_vocab_size(),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=inner,
        max_position_embeddings=positions + 2,  # counted from padding_idx + 1
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        layer_norm_eps=1e-5,
    )
    torch.manual_seed(seed)
    model = XLMRobertaModel(config, add_pooling_layer=False)
    with torch.no_grad():  # larger than the 0.02 init, so every position's vector matters
        for param in model.embeddings.parameters():
            param.normal_(0, 0.5)
    model.save_pretrained(hf, safe_serialization=True)
    folder = out / "st"
    transformer = models.Transformer(str(hf), max_seq_length=positions)
    pooling = models.Pooling(hidden, pooling_mode="mean")
    SentenceTransformer(modules=[transformer, pooling, models.Normalize()]).save(str(folder))
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="e5-base")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    print(write(a.out, a.preset))


if __name__ == "__main__":
    main()
