"""Every candidate searched for real brain MR volumes and left out of the transfer check's two sets
(bench/realism_volumes.py), with why: the "Searched and not used" table of
docs/results/realism/REAL_VOLUMES.md."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A file (or package) searched for real brain MR volumes and left out of both sets, with why."""

    where: str  # PyPI or Debian 12 package
    files: str
    what: str
    why: str


_MRICRON, _ITK = "mricron-data (Debian 12)", "insighttoolkit5-examples (Debian 12)"
_SIM = "the simulator's own anatomy (data/simulation builds every simulated subject from it)"
NOT_USED: tuple[Candidate, ...] = (
    Candidate("nilearn (PyPI)", "datasets/data/mni_icbm152_*_09a_converted.nii.gz",
              "ICBM152 2009a T1 template and tissue maps: a population average", _SIM),
    Candidate("nilearn (PyPI)", "datasets/data/image_10426.nii.gz", "a statistical map (t values)",
              "not an MR image"),
    Candidate("nibabel (PyPI)", "tests/data/example4d.nii.gz", "single-subject T2*-weighted EPI",
              "the tuning set; example_nifti2.nii.gz is a crop of the same series"),
    Candidate("nibabel (PyPI), nipy (PyPI)", "anatomical.nii, example4d+orig.BRIK.gz, functional.nii, "
              "reoriented_anat_moved.nii; nipy testing/anatomical.nii.gz, functional.nii.gz",
              "one subject's spatially normalised T1 and EPI (nipy's are the same files)",
              "a 66 x 82 mm box cut out of the brain's centre (33 x 41 x 25 at 2 mm; the EPI 17 x 21 x 3 "
              "at 4 mm): fitted to a site's field of view it is a bright rectangle with hard edges"),
    Candidate("nibabel (PyPI)", "tests/data/0.dcm, 1.dcm; nicom/tests/data/siemens_dwi_*.dcm.gz, "
              "philips_mprage.dcm.gz, csa_slice_norm.dcm, decimal_rescale.dcm",
              "DICOM headers of real diffusion, MPRAGE, fMRI and qT1 series",
              "pixel data replaced by test patterns or zeros, or left out"),
    Candidate("nibabel (PyPI)", "slicethickness_empty_string.dcm", "a MIP of a time-of-flight angiogram",
              "a derived projection, not a slice"),
    Candidate("nibabel (PyPI)", "*.PAR/REC, *.mnc, tinypet.v, test.mgz, standard.nii.gz, scaled+tlrc",
              "phantoms, synthetic arrays, PET, a statistical map", "not a human brain MR image"),
    Candidate("dipy (PyPI)", "data/files/ascm_out_test.nii.gz", "aniso_vox.nii.gz denoised",
              "the same scan as the test volume aniso"),
    Candidate("dipy (PyPI)", "small_25, small_64D, small_101D", "diffusion series",
              "10 x 10 x 10 voxel crops (or smaller)"),
    Candidate("pydicom (PyPI)", "data/test_files/MR_small*.dcm", "one MR image, 64 x 64 at 0.31 mm",
              "a 20 mm crop: no head outline, not a brain slice"),
    Candidate("pydicom (PyPI)", "test_files/dicomdirtests/98892003/MR*", "MR localizers and an angiogram",
              "16 x 16 thumbnails"),
    Candidate("pydicom-data (PyPI)", "emri_small*.dcm", "enhanced MR, 'HEAD', T1 TFE",
              "a 64 x 64 crop of a 256 x 256 acquisition, pixel size removed"),
    Candidate("pydicom-data (PyPI)", "MR2_*.dcm, MR-SIEMENS-DICOM-WithOverlays.dcm",
              "MR of a shoulder; MR of an abdomen", "not a brain"),
    Candidate("deid-data (PyPI)", "humans/ctbrain*.dcm", "head CT", "CT, not MR"),
    Candidate("scikit-image (PyPI)", "data.brain()", "10 MR slices of a head",
              "not in the wheel: fetched from the internet on first use"),
    Candidate("templateflow, torchio, antspyx, nighres, siibra, brainglobe (PyPI)", "their data sets",
              "templates and sample scans", "fetched from the internet at run time; the wheels ship none"),
    Candidate("nitime, nipype (PyPI)", "data/fmri*.nii.gz; testing/data/ds003_sub-01_mc.nii.gz",
              "fMRI series", "10 x 10 x 18 crops; 16 x 16 x 9 at 12.5 mm"),
    Candidate("fslpy (PyPI)", "tests/test_transform/testdata/nonlinear/src.nii.gz, ref.nii.gz, "
              "tests/testdata/test_feat/*", "T1 and fMRI test data",
              "slabs (35 x 96 x 54 at 1 mm) and crops"),
    Candidate("nimare (PyPI)", "resources/templates/tpl-MNI152NLin6Asym_res-01_T1w.nii.gz",
              "MNI152 T1, a population average",
              "its install pulls in numba, pandas, scikit-learn, statsmodels and plotly and pins "
              "nilearn<0.14, for a template of the family the simulator is built from"),
    Candidate("neurosynth (PyPI)", "resources/MNI152_T1_2mm_brain.nii.gz", "MNI152 brain, an average",
              "sdist of 2019 with Python-2-era dependencies; the same template family"),
    Candidate("tractseg, sdcflows, qsiprep (PyPI)", "MNI_FA_template, fmap_atlas, mni_lps_fmap_atlas",
              "FA template, field-map atlases", "not anatomical MR images"),
    Candidate("SimpleITK, itk, monai, medpy, highdicom, dicom2nifti, dcmstack, nitransforms, niworkflows, "
              "mriqc, fastmri (PyPI)", "-", "-", "no image data in the wheel (nitransforms: warp fields)"),
    Candidate(_MRICRON, "templates/ch2better.nii.gz",
              "Colin27 (the subject of the test volume colin27) at 0.5 mm, brain only, the CSF set to zero "
              "and the tissue rescaled to 51-130", "the same scan, made into a rendering image"),
    Candidate(_MRICRON, "templates/inia19-t1-brain.nii.gz, inia19-NeuroMaps.nii.gz",
              "INIA19: a template of the rhesus macaque brain, an average over animals, and its labels",
              "not human; a population average"),
    Candidate(_MRICRON, "templates/natbrainlab.nii.gz, jhu189.nii.gz, aal.nii.gz, brodmann.nii.gz, "
              "AICHAmc.nii.gz, HarvardOxford-cort-maxprob-thr0-1mm.nii.gz, "
              "JHU-WhiteMatter-labels-*.nii.gz",
              "atlases: label maps (natbrainlab: white-matter tracts of a group; jhu189: 189 regions)",
              "not MR images"),
    Candidate(_ITK, "KmeansTest_T1RawSkullStrip.nii.gz, KmeansTest_T1KmeansPrelimSegmentation.nii.gz",
              "the brain mask (labels 4-6) and a k-means tissue classification (labels 0-6) of "
              "KmeansTest_T1UCharRaw.nii.gz",
              "not MR images (the mask makes the test volume kmeans_t1_brain)"),
    Candidate(_ITK, "BrainT1Slice*, BrainProtonDensitySlice* (.png, .mhd, .raw, .zraw, .nhdr), "
              "BrainProtonDensity3Slices.mha, ResampleImageFilterInput2x3*.mha",
              "BrainWeb's T1 and PD slices (181 x 217 at 1 mm, BrainWeb's grid) and shifted, rotated, "
              "bordered or resampled copies", "simulations, not scans"),
    Candidate(_ITK, "itkBrainSliceComplex.mha, itkBrainSliceComplexMagnitude.mha, "
              "itkBrainSliceComplexPhase.mha",
              "a complex slice: its magnitude is BrainProtonDensitySlice.png (r = 0.99), its phase the T1 "
              "slice BrainT1Slice.png (r = 0.95 inside the head) scaled to [0, pi/2]",
              "a simulation with a made-up phase"),
    Candidate(_ITK, "BrainMidSagittalSlice.png", "a mid-sagittal T1 slice, 217 x 180 at 1 mm",
              "synthesized: 'a synthesized MR-T1 mid-sagittal slice' (ITK Software Guide, "
              "Segmentation/GeodesicActiveContourShapePriorLevelSetImageFilter.cxx)"),
    Candidate(_ITK, "BrainWeb/*.mha.md5, *.mha.sha512", "checksums of BrainWeb volumes",
              "the volumes are not in the package (and are simulations)"),
    Candidate(_ITK, "FatMRISlice.png, RatLungSlice1.mha, RatLungSlice2.mha, VisibleWomanHeadSlice.png, "
              "VisibleWomanEyeSlice.png", "MR of an abdomen; rat lung slices; colour photographs of a "
              "cryosection (Visible Woman)", "not a human brain MR image"),
    Candidate(_ITK, "CorpusCallosum*.mha, VentricleModel.png, BayesianClassifierInitializerMemberships.mhd, "
              "other *.png", "a shape model, masks, class memberships, test patterns", "not MR images"),
    Candidate("mni-colin27-nifti, mni-icbm152-nlin-2009 (NeuroDebian)", "-", "Colin27, ICBM152",
              "not in Debian 12's main archive, the only Debian archive the project reaches"),
)  # fmt: skip
