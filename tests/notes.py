"""Clinical-style notes for serving tests (synthetic text, no real patient data)."""

SENTENCES = [
    "Patients with breast cancer were treated with tamoxifen and radiotherapy.",
    "Inhaled steroids reduced asthma exacerbations in children.",
    "Type 2 diabetes was managed with metformin; hypertension with beta blockers.",
    "No evidence of migraine after surgery.",
]

NOTES = [
    " ".join(SENTENCES),
    "Follow-up:\nchronic kidney disease, stage 3.\n\nStarted ACE inhibitors (lisinopril 10 mg).",
    "Ωmega-3 für Diabetes — 😀 ok. 患者 has hepatitis C.",
    "x",
    " ".join(SENTENCES * 30),  # ~500 words: several windows
]
LONG_NOTE = " ".join(SENTENCES * 300)  # ~5,000 words: many windows (one test needs it; it slows every other)
