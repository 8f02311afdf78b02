//! Reference checks of the bi-encoder on the real models (too large for the repository, so not in
//! the test suite): all-MiniLM-L6-v2 and multilingual-e5-small-trimmed embeddings against
//! sentence-transformers' numbers copied from the models' `expected_hidden.jsonl`.
//!
//!   bash ../shared/models/fetch-all-MiniLM-L6-v2.sh
//!   CROSSDISTILL_E5=../shared/models/multilingual-e5-small-trimmed cargo run --release --example bi_encoder_reference

#![allow(clippy::excessive_precision)]

use crossdistill::model::bi_encoder::{BiEncoder, BiEncoderOptions, EncodeOptions};

/// Reference: all-MiniLM-L6-v2's `expected_hidden.jsonl` (`normalized_first8`, torch f32,
/// = `SentenceTransformer.encode` within 1.25e-7), copied here. The 90 MB model is not in
/// the repository: assemble it with shared/models/fetch-all-MiniLM-L6-v2.sh and run
/// `cargo test --lib bi_encoder -- --ignored`.
#[allow(clippy::excessive_precision)] // copied verbatim from the reference file
fn minilm_embeddings_match_sentence_transformers() {
    let dir = std::env::var("CROSSDISTILL_MINILM").unwrap_or_else(|_| {
        format!(
            "{}/.cache/crossdistill/models/all-MiniLM-L6-v2",
            std::env::var("HOME").unwrap()
        )
    });
    let encoder = BiEncoder::load(&dir, None, &BiEncoderOptions::default()).unwrap();
    assert_eq!(encoder.max_seq_length(), 256);
    let cases: [(&str, &[f32]); 3] = [
        (
            "This is an example sentence.",
            &[
                0.09812458604574203,
                0.0678127259016037,
                0.06252315640449524,
                0.0950847864151001,
                0.036647550761699677,
                -0.0039845728315413,
                0.00747757637873292,
                -0.013231485150754452,
            ],
        ),
        (
            "A man is playing a guitar on stage while the crowd sings along.",
            &[
                0.004674670286476612,
                -0.003650036873295903,
                -0.03750452399253845,
            ],
        ),
        (
            "Café crème brûlée costs €7 in Saint-Germain-des-Prés — naïve, isn't it?",
            &[
                0.06804411113262177,
                -0.030045930296182632,
                -0.0007017367170192301,
            ],
        ),
    ];
    let texts: Vec<&str> = cases.iter().map(|(text, _)| *text).collect();
    let embeddings = encoder
        .encode(
            &texts,
            &EncodeOptions {
                batch_size: 3,
                prompt: None,
                normalize: true,
            },
            &mut |_| {},
        )
        .unwrap();
    for (index, (_, expected)) in cases.iter().enumerate() {
        for (got, want) in embeddings.row(index).iter().zip(expected.iter()) {
            assert!((got - want).abs() < 1e-5, "case {index}: {got} vs {want}");
        }
    }
}

/// Reference: multilingual-e5-small-trimmed's `expected_hidden.jsonl` (mean_pooled_first8 /
/// mean_pooled_l2norm, torch f32 from the f16 weights), copied here; the e5 prompt is given
/// as a prompt, not in the text. Run with CROSSDISTILL_E5 pointing at the model directory.
#[allow(clippy::excessive_precision)] // computed in f64 from the reference file
fn e5_embeddings_match_the_reference_with_prompts() {
    let dir = std::env::var("CROSSDISTILL_E5").expect("CROSSDISTILL_E5 names the model");
    let encoder = BiEncoder::load(&dir, None, &BiEncoderOptions::default()).unwrap();
    let options = |prompt| EncodeOptions {
        batch_size: 2,
        prompt: Some(prompt),
        normalize: true,
    };
    let queries = encoder
        .encode(
            &[
                "how much protein should a female eat",
                "Quelle est la hauteur de la tour Eiffel ?",
            ],
            &options("query: "),
            &mut |_| {},
        )
        .unwrap();
    let passages = encoder
        .encode(
            &["Berlin hat rund 3,7 Millionen Einwohner und ist die größte Stadt Deutschlands."],
            &options("passage: "),
            &mut |_| {},
        )
        .unwrap();
    // mean_pooled_first8[..3] / mean_pooled_l2norm of the en, fr and de rows.
    let checks: [(&[f32], [f32; 3]); 3] = [
        (
            queries.row(0),
            [
                0.03205618730635998,
                -0.044485734722074365,
                -0.06024040357617549,
            ],
        ),
        (
            queries.row(1),
            [
                0.027632798248177978,
                -0.02699926859899951,
                -0.01513521859299648,
            ],
        ),
        (
            passages.row(0),
            [
                0.03707269698928687,
                0.018835927777403078,
                0.01013891595482851,
            ],
        ),
    ];
    for (index, (got, want)) in checks.iter().enumerate() {
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "case {index}: {g} vs {w}");
        }
    }
}

fn main() {
    minilm_embeddings_match_sentence_transformers();
    println!("all-MiniLM-L6-v2: embeddings match sentence-transformers");
    if std::env::var("CROSSDISTILL_E5").is_ok() {
        e5_embeddings_match_the_reference_with_prompts();
        println!("multilingual-e5-small-trimmed: embeddings match the reference");
    }
}
