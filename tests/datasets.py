"Small labelled collections the tests build themselves from the real ESC-50 clips in ../shared (no network)."
from pathlib import Path
import numpy as np, pandas as pd, soundfile as sf, soxr

# 6 classes x 4 folds x 2 clips: lengths from 0.2 s to 60 s, files at 8 kHz, 16 kHz and 44.1 kHz, WAV and FLAC
LENGTHS_S = (0.2, 1.0, 2.5, 5.0, 12.0, 60.0)
RATES_HZ = (8000, 44100, 16000)


def build_collection(folder, classes=(0, 1, 10, 11, 40, 41), n_folds:int=4, per_fold:int=2, superlabel:bool=True,
                     same_names_as_esc50:bool=False) -> Path:
    """Write audio files and `catalogue.csv` into `folder`; returns the CSV. Each clip is made of real ESC-50 clips of
    one class (several joined for the long ones), cut to one of LENGTHS_S, resampled to one of RATES_HZ. With
    `same_names_as_esc50` every file is named like an ESC-50 clip of the same class, but holds *other* audio."""
    from audio_latent.data import esc50_catalogue, load_audio
    cat = esc50_catalogue(); folder = Path(folder); folder.mkdir(parents=True, exist_ok=True)
    rows, k = [], 0
    for t in classes:
        pool = cat[cat.target == t].reset_index(drop=True)
        for fold in range(1, n_folds + 1):
            for j in range(per_fold):
                i = (fold - 1) * per_fold + j
                length, sr = LENGTHS_S[k % len(LENGTHS_S)], RATES_HZ[k % len(RATES_HZ)]; k += 1
                picks = [pool.path[(i + m) % len(pool)] for m in range(int(np.ceil(length / 5)))]
                y = np.concatenate([load_audio(p, 16000) for p in picks])[:int(length * 16000)]
                if same_names_as_esc50: y = y[::-1].copy()         # other content under an ESC-50 name
                if sr != 16000: y = soxr.resample(y, 16000, sr)
                name = (Path(pool.path[i]).stem if same_names_as_esc50 else f'{pool.category[0]}_{fold}_{j}') + ('.flac' if k % 2 else '.wav')
                sf.write(folder/name, y.astype(np.float32), sr, subtype='PCM_16')
                row = dict(filename=name, label=pool.category[0], fold=fold, group=f'{pool.src_file[i]}')
                if superlabel: row['superlabel'] = {0: 'animals', 1: 'nature', 4: 'urban'}[t // 10]
                rows.append(row)
    csv = folder/'catalogue.csv'
    pd.DataFrame(rows).to_csv(csv, index=False)
    return csv
