"Papermill parameters are checked where they are given: a wrong type, an out-of-range value or a misspelt name stops a notebook at its settings cell."
import time
import pytest
from conftest import ROOT, run_notebook

from audio_latent.experiment import SettingError, check_parameters, check_setting_types, config_from_settings, load_settings


def _fails_fast(tmp_path, **parameters):
    "Run 02b_baseline (profile tiny) with `parameters`; return its PapermillExecutionError, asserting it came from the settings cell, quickly."
    import papermill as pm
    t0 = time.perf_counter()
    with pytest.raises(pm.PapermillExecutionError) as info:
        run_notebook('02b_baseline.ipynb', tmp_path, profile='tiny', reports=str(tmp_path/'reports'), **parameters)
    err, wall = info.value, time.perf_counter() - t0
    assert err.ename == 'SettingError', (err.ename, err.evalue)
    assert 'check_parameters(globals(), _declared)' in err.source and 'mfcc_mean_std' not in err.source   # the settings cell, before any MFCC
    assert wall < 20, wall   # the kernel start and the cells before the settings cell; a run to the MFCC step takes longer
    assert not (tmp_path/'reports').exists()   # nothing was written
    return err


def test_baseline_n_mfcc_zero_fails_at_settings(tmp_path):
    err = _fails_fast(tmp_path, n_mfcc=0)
    assert 'n_mfcc=0: must be an integer from 1 to 128' in err.evalue


def test_baseline_n_mfcc_not_a_number_fails_at_settings(tmp_path):
    err = _fails_fast(tmp_path, n_mfcc='abc')
    assert "n_mfcc='abc': must be an integer from 1 to 128" in err.evalue


def test_baseline_misspelt_parameter_fails_at_settings(tmp_path):
    err = _fails_fast(tmp_path, n_mfc=20)
    assert 'unknown parameter n_mfc (did you mean n_mfcc?)' in err.evalue and "this notebook's parameters: " in err.evalue
    assert 'n_mfcc' in err.evalue.split("parameters: ")[1] and '_before' not in err.evalue and '_declared' not in err.evalue


def test_baseline_bad_seed_fails_at_settings(tmp_path):
    err = _fails_fast(tmp_path, seed=-1)
    assert 'seed=-1: must be an integer' in err.evalue


def _vae_fields():
    "VAEConfig's field annotations, without importing TensorFlow: the `latent_dim: int` of nbs/04_vae.ipynb."
    return {'latent_dim': 'int', 'n_per_class': 'int|None', 'epoch_candidates': 'tuple', 'learning_rate': 'float'}


@pytest.mark.parametrize('bad,msg', [(0, 'latent_dim=0: must be an integer from 1 to 4096'),
                                     (-1, 'latent_dim=-1: must be an integer from 1 to 4096'),
                                     (2.5, 'latent_dim=2.5: must be an integer from 1 to 4096'),
                                     ('abc', "latent_dim='abc': must be an integer from 1 to 4096"),
                                     (1e9, 'latent_dim=1000000000.0: must be an integer from 1 to 4096'),
                                     (128.0, 'latent_dim=128.0: must be an integer from 1 to 4096 (128.0 is a float: give 128)'),
                                     (True, 'latent_dim=True: must be an integer from 1 to 4096')])
def test_latent_dim_refused(bad, msg):
    with pytest.raises(SettingError, match=None) as info: check_setting_types(_vae_fields(), {'latent_dim': bad})
    assert msg in str(info.value)
    assert isinstance(info.value, ValueError)


def test_good_values_pass():
    assert check_setting_types(_vae_fields(), {'latent_dim': 64, 'n_per_class': None, 'epoch_candidates': (2, 4), 'learning_rate': 1}) is not None
    with pytest.raises(SettingError, match=r'epoch_candidates\[1\]=0: must be an integer from 1 to 10000'):
        check_setting_types(_vae_fields(), {'epoch_candidates': [2, 0]})


def test_vae_config_checks_latent_dim():
    from audio_latent.vae import VAEConfig
    for bad in (0, -1, 2.5, 'abc', 1e9, True):
        with pytest.raises(SettingError, match='latent_dim='):
            VAEConfig.from_settings(load_settings('vae', 'tiny', {'latent_dim': bad}), 'tiny')
    assert VAEConfig.from_settings(load_settings('vae', 'tiny', {'latent_dim': 64}), 'tiny').latent_dim == 64


def test_check_parameters():
    declared = {'_before', 'profile', 'latent_dim', 'seed'}
    check_parameters({'profile': 'tiny', 'latent_dim': 64, 'seed': 0}, declared)
    with pytest.raises(SettingError) as info: check_parameters({'profile': 'tiny', 'latnt_dim': 64}, declared)
    assert str(info.value) == "unknown parameter latnt_dim (did you mean latent_dim?); this notebook's parameters: latent_dim, profile, seed"
    for bad in (-1, 2.5, True, 'abc'):
        with pytest.raises(SettingError, match='seed='): check_parameters({'profile': 'tiny', 'seed': bad}, declared)
    # in a kernel, only the names papermill's injected cell assigns are parameters given
    ns = {'In': ['', 'profile = "cpu"', '# Parameters\nprofile = "tiny"\nlatnt_dim = 64\n', 'x = 1'], 'profile': 'tiny', 'latnt_dim': 64, 'x': 1}
    with pytest.raises(SettingError, match=r'unknown parameter latnt_dim \(did you mean latent_dim\?\)'): check_parameters(ns, declared)
    check_parameters({**ns, 'In': ['', 'profile = "cpu"', 'x = 1']}, declared)


def test_every_profile_passes_for_every_track():
    import yaml
    from audio_latent.baseline import BaselineConfig
    from audio_latent.yamnet_experiment import YAMNetConfig
    from audio_latent.vae import VAEConfig
    from audio_latent import metric_learning as ml, thesis_models as tm
    plan = yaml.safe_load((ROOT/'reports'/'params.yaml').read_text())
    assert set(plan['notebooks']) == {'baseline', 'yamnet', 'vae', 'metric_learning', 'thesis_models'}
    for track in plan['notebooks']:
        for profile in plan[track]:
            s = load_settings(track, profile)
            if track == 'baseline': check_setting_types(BaselineConfig, {**s, 'seed': 0})
            elif track == 'yamnet': check_setting_types(YAMNetConfig, {**s, 'seed': 0})
            elif track == 'vae': VAEConfig.from_settings(s, profile)
            elif track == 'metric_learning': ml.load_config(profile)
            else: tm.load_config(profile)
