"""Language-id accuracy of lingua (lingua-language-detector, offline models in the wheel) on our EN/ZH set.

The set: every sentence of tests/dmu/data/{en,zh}_sentences.txt, their short prefixes (5 words /
8 characters), 3-sentence documents, code-switched sentences (a Chinese sentence with English
terms, labelled zh), traditional-script Chinese, and hard negatives in other languages (Japanese
with many kanji, Korean, French, German) that must not come out as en/zh. Baseline: a script
heuristic (CJK share > 30% -> zh, else en), which cannot reject other languages.

    .venv/bin/python bench/dmu_langid.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dmu_service.pipeline import langid  # noqa: E402

DATA = ROOT / "tests" / "dmu" / "data"
TERMS = ["GPU", "Python", "API", "deep learning", "Transformer", "open source"]
# Hard negatives a Chinese/English filter must reject (written for this benchmark): kanji-heavy Japanese
# first, then Korean, French, German.
OTHER = [
    ("東京都内の大学で研究者として働いています。", "ja"),
    ("昨日は雨が降ったので、図書館で本を読みました。", "ja"),
    ("日本経済新聞社の調査によると、企業の設備投資が増加している。", "ja"),
    ("会議は午後三時から始まる予定です。", "ja"),
    ("新しい駅の建設工事は来年完成する見込みだ。", "ja"),
    ("この問題について、政府は慎重に検討している。", "ja"),
    ("서울은 한국의 수도이며 인구가 매우 많습니다.", "ko"),
    ("어제 친구와 함께 영화를 보러 갔어요.", "ko"),
    ("Le train pour Lyon part à huit heures du matin.", "fr"),
    ("Nous avons visité le musée avec les enfants hier.", "fr"),
    ("La réunion a été reportée à la semaine prochaine.", "fr"),
    ("Die Kinder spielen jeden Abend im Park Fußball.", "de"),
    ("Wir haben gestern einen langen Spaziergang gemacht.", "de"),
    ("Der Zug nach Berlin hat zwanzig Minuten Verspätung.", "de"),
]
TRADITIONAL_ZH = [
    "這個城市的圖書館每天晚上都開到十點。",
    "我們昨天在公園裡散步，天氣非常好。",
    "學生們正在準備下個月的考試。",
    "這家餐廳的菜很好吃，價格也很合理。",
]


def _sentences(language: str) -> list[str]:
    return [s for s in (DATA / f"{language}_sentences.txt").read_text().splitlines() if s.strip()]


def labelled_set() -> dict[str, list[tuple[str, str]]]:
    en, zh = _sentences("en"), _sentences("zh")
    return {
        "sentences": [(s, "en") for s in en] + [(s, "zh") for s in zh],
        "short prefixes": [(" ".join(s.split()[:5]), "en") for s in en] + [(s[:8], "zh") for s in zh],
        "3-sentence docs": [(" ".join(en[i : i + 3]), "en") for i in range(0, 78, 3)]
        + [("".join(zh[i : i + 3]), "zh") for i in range(0, 78, 3)],
        "code-switched zh": [(s[: len(s) // 2] + TERMS[i % len(TERMS)] + s[len(s) // 2 :], "zh") for i, s in enumerate(zh)],
        "traditional zh": [(s, "zh") for s in TRADITIONAL_ZH],
        "other languages": OTHER,
    }


def main() -> None:
    sets = labelled_set()
    langid.detect("warm up the models")
    total = correct = baseline_correct = 0
    print(f"{'subset':<20}{'n':>5}{'lingua':>9}{'script heuristic':>18}")
    started = time.perf_counter()
    for name, cases in sets.items():
        predicted = [code for code, _ in langid.detect_batch([t for t, _ in cases])]
        heuristic = ["zh" if langid.cjk_ratio(t) > 0.3 else "en" for t, _ in cases]  # can only say en/zh
        ok = sum(p == gold for p, (_, gold) in zip(predicted, cases))
        base = sum(p == gold for p, (_, gold) in zip(heuristic, cases))
        print(f"{name:<20}{len(cases):>5}{ok / len(cases):>9.3f}{base / len(cases):>18.3f}")
        total, correct, baseline_correct = total + len(cases), correct + ok, baseline_correct + base
    elapsed = time.perf_counter() - started
    print(f"{'all':<20}{total:>5}{correct / total:>9.3f}{baseline_correct / total:>18.3f}")
    print(
        f"lingua accuracy {correct / total:.3f} vs script heuristic {baseline_correct / total:.3f} on {total} samples "
        f"(EN/ZH + other-language negatives), {total / elapsed:.0f} samples/s"
    )


if __name__ == "__main__":
    main()
