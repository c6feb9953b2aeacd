//! Principal-component variances against scikit-learn, IsoScore against the IsoScore package.
//! Reference values: tests/data/geometry_reference.safetensors, from scripts/reference_geometry.py.

mod common;

use isotropy_lab::matrix::Matrix;
use isotropy_lab::spectrum::Spectrum;
use safetensors::SafeTensors;

fn reference() -> Vec<u8> {
    std::fs::read(common::root().join("tests/data/geometry_reference.safetensors")).unwrap()
}

fn f32_matrix(st: &SafeTensors, name: &str) -> Matrix {
    let t = st.tensor(name).unwrap();
    let data = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    Matrix::new(t.shape()[0], t.shape()[1], data).unwrap()
}

fn f64s(st: &SafeTensors, name: &str) -> Vec<f64> {
    st.tensor(name)
        .unwrap()
        .data()
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

#[test]
fn variances_and_isoscore_match_the_references() {
    let bytes = reference();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    for case in ["aniso", "iso", "real"] {
        let m = f32_matrix(&st, case);
        let s = Spectrum::of(&m).unwrap();
        let expected = f64s(&st, &format!("{case}_variances"));
        let top = expected[0];
        // scikit-learn keeps min(N, d) components; the rest of ours are (numerically) zero.
        for (i, (&a, &b)) in s.variances.iter().zip(&expected).enumerate() {
            assert!(
                (a - b).abs() <= 1e-8 * b.abs() + 1e-12 * top,
                "{case} component {i}: {a} vs {b}"
            );
        }
        assert!(
            s.variances[expected.len()..]
                .iter()
                .all(|&v| v <= 1e-10 * top),
            "{case}: tail not zero"
        );
        let iso = s.isoscore().unwrap();
        // [the IsoScore package (float32 constants, ~1e-7 rounding), its formula in numpy float64]
        let expected = f64s(&st, &format!("{case}_isoscore"));
        assert!(
            (iso - expected[1]).abs() <= 1e-9 * expected[1].abs(),
            "{case} IsoScore {iso} vs numpy {}",
            expected[1]
        );
        assert!(
            (iso - expected[0]).abs() <= 1e-6 * expected[0].abs(),
            "{case} IsoScore {iso} vs package {}",
            expected[0]
        );
    }
}

#[test]
fn spectrum_invariants_and_bad_input() {
    // Variance in one direction only: IsoScore 0, one component explains everything.
    let line = Matrix::new(4, 3, vec![1., 0., 0., 2., 0., 0., 3., 0., 0., 4., 0., 0.]).unwrap();
    let s = Spectrum::of(&line).unwrap();
    assert!(s.isoscore().unwrap().abs() < 1e-12);
    assert_eq!(s.components_for(0.99), 1);
    assert!((s.participation_ratio() - 1.0).abs() < 1e-12);
    // Equal variance in every direction: IsoScore 1, participation ratio d.
    let cube = Matrix::new(4, 2, vec![1., 0., -1., 0., 0., 1., 0., -1.]).unwrap();
    let s = Spectrum::of(&cube).unwrap();
    assert!((s.isoscore().unwrap() - 1.0).abs() < 1e-12);
    assert!((s.participation_ratio() - 2.0).abs() < 1e-12);
    // Bad input: clear errors.
    let one_row = Matrix::new(1, 3, vec![1., 2., 3.]).unwrap();
    assert!(Spectrum::of(&one_row)
        .unwrap_err()
        .to_string()
        .contains("at least 2 rows"));
    let constant = Matrix::new(3, 2, vec![1., 1., 1., 1., 1., 1.]).unwrap();
    assert!(Spectrum::of(&constant)
        .unwrap()
        .isoscore()
        .unwrap_err()
        .to_string()
        .contains("no variance"));
    let nan = Matrix::new(2, 2, vec![1., f32::NAN, 0., 0.]).unwrap();
    assert!(Spectrum::of(&nan)
        .unwrap_err()
        .to_string()
        .contains("not finite"));
}
