//! The statistics sentence-transformers prints after mining (the end of `mine_hard_negatives`
//! in `util/hard_negatives.py`, under `if verbose`): a table of
//! positive, negative and difference scores, the candidates each filter skipped, and how many
//! samples lacked negatives.

use super::select::Skipped;

/// count/mean/median/std/min/25%/50%/75%/max of a set of scores, as torch computes them:
/// `median` is the lower middle value (torch.median), quantiles interpolate linearly
/// (torch.quantile), `std` is the sample standard deviation (n − 1). On no scores, mean,
/// median and std are NaN, min and quantiles +∞ and max −∞ (sentence-transformers' fallbacks).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreSummary {
    /// Number of scores.
    pub count: usize,
    /// Mean.
    pub mean: f64,
    /// Lower median.
    pub median: f64,
    /// Sample standard deviation.
    pub std: f64,
    /// Minimum.
    pub min: f64,
    /// 25th percentile.
    pub q25: f64,
    /// 50th percentile (interpolated).
    pub q50: f64,
    /// 75th percentile.
    pub q75: f64,
    /// Maximum.
    pub max: f64,
}

impl ScoreSummary {
    /// Summarise `scores`.
    pub fn of(scores: &[f32]) -> Self {
        let mut sorted: Vec<f64> = scores.iter().map(|&s| f64::from(s)).collect();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        if n == 0 {
            return Self {
                count: 0,
                mean: f64::NAN,
                median: f64::NAN,
                std: f64::NAN,
                min: f64::INFINITY,
                q25: f64::INFINITY,
                q50: f64::INFINITY,
                q75: f64::INFINITY,
                max: f64::NEG_INFINITY,
            };
        }
        let mean = sorted.iter().sum::<f64>() / n as f64;
        let variance = if n > 1 {
            sorted.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64
        } else {
            f64::NAN
        };
        let quantile = |q: f64| {
            let position = q * (n - 1) as f64;
            let low = position.floor() as usize;
            let high = position.ceil() as usize;
            sorted[low] + (sorted[high] - sorted[low]) * (position - low as f64)
        };
        Self {
            count: n,
            mean,
            median: sorted[(n - 1) / 2],
            std: variance.sqrt(),
            min: sorted[0],
            q25: quantile(0.25),
            q50: quantile(0.5),
            q75: quantile(0.75),
            max: sorted[n - 1],
        }
    }
}

/// What a mining run found, for the summary sentence-transformers prints.
#[derive(Debug, Clone, PartialEq)]
pub struct MineReport {
    /// Pairs (rows) read.
    pub num_rows: usize,
    /// Distinct anchors.
    pub num_queries: usize,
    /// Distinct (query, positive) pairs.
    pub num_pairs: usize,
    /// Documents after `dedup(corpus + positives)`.
    pub corpus_size: usize,
    /// The window end used.
    pub range_max: usize,
    /// Whether the scores are a teacher's (rescored) rather than embedding similarities.
    pub rescored: bool,
    /// Positive scores.
    pub positive: ScoreSummary,
    /// Negative scores (per the output format, as sentence-transformers counts them).
    pub negative: ScoreSummary,
    /// Positive minus negative scores.
    pub difference: ScoreSummary,
    /// Candidates each filter dropped.
    pub skipped: Vec<Skipped>,
    /// Rows (samples) the output could have had.
    pub maximum_possible_samples: usize,
    /// Rows it has.
    pub rows_written: usize,
    /// The parameters that could be loosened to find more negatives (for the message).
    pub adjustable: Vec<&'static str>,
    /// Notes about the options (forced format, unused teacher, loaded caches).
    pub notes: Vec<String>,
    /// Wall-clock seconds per stage (`embedding corpus`, `embedding queries`, `searching`,
    /// `rescoring`, `selecting`), in order; a stage served from the cache is absent.
    pub stage_seconds: Vec<(String, f64)>,
}

impl MineReport {
    /// Samples that got fewer negatives than asked (`maximum_possible_samples − rows_written`).
    pub fn missing_samples(&self) -> usize {
        self.maximum_possible_samples
            .saturating_sub(self.rows_written)
    }
}

fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn number(x: f64) -> String {
    if x.is_nan() {
        "nan".into()
    } else if x.is_infinite() {
        if x > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        format!("{x:.4}")
    }
}

impl std::fmt::Display for MineReport {
    /// sentence-transformers' printout: the metric table, the skipped counts, the missing count.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let row = |f: &mut std::fmt::Formatter<'_>, a: &str, b: &str, c: &str, d: &str| {
            writeln!(f, "{a:<6} {b:>14} {c:>14} {d:>14}")
        };
        row(f, "Metric", "Positive", "Negative", "Difference")?;
        row(
            f,
            "Count",
            &thousands(self.positive.count),
            &thousands(self.negative.count),
            "",
        )?;
        type Metric = (&'static str, fn(&ScoreSummary) -> f64);
        let metrics: [Metric; 8] = [
            ("Mean", |s| s.mean),
            ("Median", |s| s.median),
            ("Std", |s| s.std),
            ("Min", |s| s.min),
            ("25%", |s| s.q25),
            ("50%", |s| s.q50),
            ("75%", |s| s.q75),
            ("Max", |s| s.max),
        ];
        for (name, get) in metrics {
            row(
                f,
                name,
                &number(get(&self.positive)),
                &number(get(&self.negative)),
                &number(get(&self.difference)),
            )?;
        }
        for skipped in &self.skipped {
            writeln!(
                f,
                "Skipped {} potential negatives ({:.2}%) due to the {} of {}.",
                thousands(skipped.count),
                skipped.ratio * 100.0,
                skipped.filter,
                skipped.value
            )?;
        }
        let missing = self.missing_samples();
        if missing > 0 {
            let considerations = match self.adjustable.split_last() {
                Some((last, [])) => format!("{last} parameter"),
                Some((last, rest)) => format!("{} and {last} parameters", rest.join(", ")),
                None => "range_max parameter".to_string(),
            };
            writeln!(
                f,
                "Could not find enough negatives for {missing} samples ({:.2}%). Consider adjusting the {considerations} if you'd like to find more valid negatives.",
                missing as f64 / self.maximum_possible_samples.max(1) as f64 * 100.0
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_matches_torch_definitions() {
        // torch.tensor([4., 1., 3., 2.]): median() = 2 (lower), quantile(.25) = 1.75,
        // quantile(.5) = 2.5, quantile(.75) = 3.25, std() = 1.2909944 (unbiased).
        let summary = ScoreSummary::of(&[4.0, 1.0, 3.0, 2.0]);
        assert_eq!(summary.count, 4);
        assert_eq!(summary.mean, 2.5);
        assert_eq!(summary.median, 2.0);
        assert_eq!((summary.q25, summary.q50, summary.q75), (1.75, 2.5, 3.25));
        assert!((summary.std - 1.290_994_4).abs() < 1e-6);
        assert_eq!((summary.min, summary.max), (1.0, 4.0));
        let empty = ScoreSummary::of(&[]);
        assert!(empty.mean.is_nan());
        assert_eq!((empty.min, empty.max), (f64::INFINITY, f64::NEG_INFINITY));
    }

    #[test]
    fn report_prints_the_table_skips_and_missing_line() {
        let report = MineReport {
            num_rows: 3,
            num_queries: 2,
            num_pairs: 3,
            corpus_size: 10,
            range_max: 33,
            rescored: false,
            positive: ScoreSummary::of(&[0.9, 0.8, 0.7]),
            negative: ScoreSummary::of(&[0.5; 1234]),
            difference: ScoreSummary::of(&[0.3]),
            skipped: vec![Skipped {
                filter: "absolute_margin",
                value: 0.0,
                count: 12_345,
                ratio: 0.0836,
            }],
            maximum_possible_samples: 9,
            rows_written: 6,
            adjustable: vec!["range_max", "absolute_margin"],
            notes: vec![],
            stage_seconds: vec![],
        };
        let text = report.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "Metric       Positive       Negative     Difference"
        );
        assert_eq!(
            lines[1],
            "Count               3          1,234               "
        );
        assert_eq!(
            lines[2],
            "Mean           0.8000         0.5000         0.3000"
        );
        assert_eq!(
            lines[4],
            "Std            0.1000         0.0000            nan"
        );
        assert_eq!(
            lines[10],
            "Skipped 12,345 potential negatives (8.36%) due to the absolute_margin of 0."
        );
        assert_eq!(
            lines[11],
            "Could not find enough negatives for 3 samples (33.33%). Consider adjusting the \
             range_max and absolute_margin parameters if you'd like to find more valid negatives."
        );
    }
}
