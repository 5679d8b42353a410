import numpy as np
from scipy import ndimage

from volgen.phantom.tumour import TumourSites, TumourSpec, random_tumour, tumour_sites


def _tissue(case):
    return case.brain.astype(np.float32), case.fractions["gm"], case.fractions["wm"]


def test_sites_computed_once_draw_the_same_tumours(phantom_case):
    # the phantom corpus's tumours must not change because lesion-mask reuses the sites across draws
    brain, gm, wm = _tissue(phantom_case)
    sites = tumour_sites(brain, gm, wm, phantom_case.affine)
    for seed in range(3):
        fresh, fresh_info = random_tumour(brain, gm, wm, phantom_case.affine, np.random.default_rng(seed))
        reused, reused_info = random_tumour(brain, gm, wm, phantom_case.affine, np.random.default_rng(seed),
                                            sites=sites)
        assert np.array_equal(fresh, reused) and fresh_info == reused_info


def test_a_tumour_with_clearance_centres_beyond_its_oedemas_reach_of_the_old_one(phantom_case):
    brain, gm, wm = _tissue(phantom_case)
    sites = tumour_sites(brain, gm, wm, phantom_case.affine)
    spec, rng = TumourSpec(), np.random.default_rng(0)
    for old_slices in (30, 60):             # a third of the grid in x; 60%: no place is clear of it for most radii
        old = np.zeros(brain.shape, bool)
        old[:old_slices] = True
        clearance = ndimage.distance_transform_edt(~old)
        cleared = TumourSites(sites.depth, sites.parenchyma, clearance)
        for _ in range(3):
            labels, info = random_tumour(brain, gm, wm, phantom_case.affine, rng, spec, cleared)
            radius = info["radius_mm"] / 2.0                   # voxels (2 mm grid)
            places = (sites.depth > radius * 1.2) & sites.parenchyma
            centre = clearance[tuple(info["centre_voxel"])]
            reach = radius * spec.oedema_reach[1] + 2
            if np.any(places & (clearance > reach)):
                assert centre > reach
            else:
                assert centre >= np.percentile(clearance[places], 90)
            assert labels.any()
