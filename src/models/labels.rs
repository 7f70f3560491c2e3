//! What the first categorical code's values stand for: the label of the real images
//! each value is matched to (the Hungarian assignment of `eval`, on the test images),
//! with the accuracy of that match. InfoGAN learns the values in a random order;
//! this map is what lets a user ask for "a 7" or "a horse" by name. It is stored in
//! the checkpoint's metadata under `METADATA_KEY`, written at each epoch end of a run
//! with a test split and by `infogan eval`.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The checkpoint metadata key of the map (JSON).
pub const METADATA_KEY: &str = "labels";

/// The label of each code value, and how well the map holds on the test images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CodeLabels {
    /// `labels[k]`: the label code value k stands for (None: no label was left for
    /// it, when there are more values than labels and Q never chose it).
    pub labels: Vec<Option<String>>,
    /// The share of test images whose code value maps to their own label.
    pub accuracy: f64,
    /// How many test images the map was made on.
    pub test_images: usize,
    /// The training step of the weights it was made with.
    pub step: u64,
}

impl CodeLabels {
    /// The map as stored, checked against the code's number of values.
    pub fn parse(json: &str, values: usize) -> std::result::Result<Self, String> {
        let map: CodeLabels =
            serde_json::from_str(json).map_err(|e| format!("an unreadable code-to-label map ({e})"))?;
        if map.labels.len() != values {
            return Err(format!(
                "a code-to-label map for {} code values, but the categorical code has {values}",
                map.labels.len()
            ));
        }
        Ok(map)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("labels serialise")
    }

    /// The label of code value `k`.
    pub fn label(&self, k: usize) -> Option<&str> {
        self.labels.get(k).and_then(|l| l.as_deref())
    }

    /// The code value a label names. Case, spaces and punctuation do not matter
    /// ("ankle-boot" finds "Ankle boot"), and a unique beginning is enough ("t-shirt"
    /// finds "T-shirt/top"); a name no value maps to is an error listing those that
    /// exist.
    pub fn value_of(&self, name: &str) -> Result<usize> {
        let wanted = simplify(name);
        let named: Vec<(usize, &str)> =
            self.labels.iter().enumerate().filter_map(|(k, l)| l.as_deref().map(|l| (k, l))).collect();
        let exact: Vec<usize> = named.iter().filter(|(_, l)| simplify(l) == wanted).map(|&(k, _)| k).collect();
        let prefix: Vec<usize> = named
            .iter()
            .filter(|(_, l)| !wanted.is_empty() && simplify(l).starts_with(&wanted))
            .map(|&(k, _)| k)
            .collect();
        match (exact.as_slice(), prefix.as_slice()) {
            ([k], _) | ([], [k]) => Ok(*k),
            _ => {
                let mut known: Vec<&str> = named.iter().map(|&(_, l)| l).collect();
                known.sort_by_key(|l| simplify(l));
                let what =
                    if prefix.len() > 1 { "names more than one label" } else { "is not a label of any code value" };
                Err(Error::Invalid(format!(
                    "--label {name:?} {what}; this model's labels are: {}",
                    known.iter().map(|l| format!("{l:?}")).collect::<Vec<_>>().join(", ")
                )))
            }
        }
    }
}

/// Lower case, letters and digits only.
fn simplify(name: &str) -> String {
    name.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fashion() -> CodeLabels {
        let names = ["Sandal", "T-shirt/top", "Ankle boot", "Shirt", "Bag", "Coat", "Dress", "Sneaker", "Pullover"];
        let mut labels: Vec<Option<String>> = names.iter().map(|n| Some(n.to_string())).collect();
        labels.push(None);
        CodeLabels { labels, accuracy: 0.6, test_images: 10_000, step: 100 }
    }

    #[test]
    fn labels_are_found_by_loose_names() {
        let m = fashion();
        let names = [("sandal", 0), ("SANDAL", 0), ("ankle-boot", 2), ("Ankle boot", 2), ("t-shirt", 1), ("shirt", 3)];
        for (name, k) in names {
            assert_eq!(m.value_of(name).unwrap(), k, "{name}");
        }
        // An exact name wins over the labels it begins.
        let mut m2 = fashion();
        m2.labels[9] = Some("Bag strap".into());
        assert_eq!(m2.value_of("bag").unwrap(), 4);
        assert!(m2.value_of("ba").is_err());
        assert_eq!(m.label(9), None);
    }

    #[test]
    fn an_unknown_or_ambiguous_label_lists_the_known_ones() {
        let m = fashion();
        let e = m.value_of("trouser").unwrap_err().to_string();
        assert!(e.contains("is not a label") && e.contains("\"Ankle boot\"") && e.contains("\"Sneaker\""), "{e}");
        let e = m.value_of("s").unwrap_err().to_string();
        assert!(e.contains("more than one"), "{e}");
        assert!(m.value_of("").is_err());
    }

    #[test]
    fn the_stored_map_must_fit_the_code() {
        let json = fashion().to_json();
        assert_eq!(CodeLabels::parse(&json, 10).unwrap(), fashion());
        assert!(CodeLabels::parse(&json, 12).unwrap_err().contains("10 code values"));
        assert!(CodeLabels::parse("{", 10).unwrap_err().contains("unreadable"));
    }
}
