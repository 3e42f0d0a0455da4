//! Filipino names and the e-mail addresses people make of them.

use super::rng::{Rng, Stream};

const FIRST: &[&str] = &[
    "Juan",
    "Jose",
    "Maria",
    "Ma. Cristina",
    "Ma. Luisa",
    "Ma. Theresa",
    "Niño",
    "Santino",
    "Angelica",
    "Kristine",
    "Mark Anthony",
    "John Paul",
    "Princess",
    "Jhon",
    "Rowena",
    "Marites",
    "Lorna",
    "Rodel",
    "Jericho",
    "Liza",
    "Carmela",
    "Joy",
    "Mary Grace",
    "Rhea",
    "Arnel",
    "Dionisio",
    "Peñafrancia",
    "Ana",
    "Bea",
    "Carlo",
    "Paolo",
    "Jasmine",
    "Lovely",
    "Jun",
    "Ramon",
    "Nena",
    "Ely",
    "Maricel",
    "Cherry",
    "Ronaldo",
    "Aileen",
    "Edgardo",
    "Rosario",
];

/// One-word family names (payers without a systeme.io contact get these, so that splitting the
/// Xendit customer name at its last space gives the right first and last name).
const LAST_ONE_WORD: &[&str] = &[
    "Santos",
    "Reyes",
    "Cruz",
    "Bautista",
    "Ocampo",
    "Garcia",
    "Mendoza",
    "Torres",
    "Castillo",
    "Peñaflor",
    "Muñoz",
    "Villanueva",
    "Ibañez",
    "Dizon",
    "Aquino",
    "Santiago",
    "Mañalac",
    "Ramos",
    "Navarro",
    "Salazar",
    "Aguilar",
    "Domingo",
    "Pascual",
    "Manalo",
    "Gonzales",
    "Zuñiga",
    "Valdez",
    "Soriano",
    "Lacson",
    "Fernandez",
    "Quiñones",
    "Macaraeg",
];

const LAST_MORE_WORDS: &[&str] = &[
    "Dela Cruz",
    "De Leon",
    "Delos Santos",
    "De Guzman",
    "Del Rosario",
];

const DOMAINS: &[(&str, u64)] = &[
    ("gmail.com", 62),
    ("yahoo.com", 14),
    ("outlook.com", 6),
    ("hotmail.com", 6),
    ("icloud.com", 4),
    ("ymail.com", 3),
    ("yahoo.com.ph", 5),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub first: String,
    pub last: String,
    /// Normalized (trimmed, lowercase) and valid.
    pub email: String,
}

impl Person {
    pub fn full_name(&self) -> String {
        format!("{} {}", self.first, self.last)
    }
}

/// The person with this index. Indexes are unique across the whole data set, and the index is
/// part of the e-mail address, so two people never share an address.
pub fn person(seed: u64, index: u32, one_word_last_name: bool) -> Person {
    let mut rng = Rng::new(seed, Stream::Person, index as u64);
    let first = rng.pick(FIRST).to_string();
    let last = if !one_word_last_name && rng.percent(15) {
        rng.pick(LAST_MORE_WORDS).to_string()
    } else {
        rng.pick(LAST_ONE_WORD).to_string()
    };
    let mut d = rng.below(100);
    let mut domain = DOMAINS[0].0;
    for (name, weight) in DOMAINS {
        if d < *weight {
            domain = name;
            break;
        }
        d -= weight;
    }
    let local = match rng.below(4) {
        0 => format!("{}{}{}", ascii(&first), ascii(&last), index),
        1 => format!("{}_{}{}", ascii(&first), ascii(&last), index),
        _ => format!("{}.{}{}", ascii(&first), ascii(&last), index),
    };
    Person {
        first,
        last,
        email: format!("{local}@{domain}"),
    }
}

/// Lowercase ASCII letters only: "Ma. Cristina" -> "macristina", "Peñaflor" -> "penaflor".
pub fn ascii(name: &str) -> String {
    name.chars()
        .filter_map(|c| match c {
            'ñ' | 'Ñ' => Some('n'),
            c if c.is_ascii_alphabetic() => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// Whether a name carries one of the Filipino marks the data must keep intact.
pub fn is_filipino_marked(name: &str) -> bool {
    name.contains('ñ') || name.contains('Ñ') || name.starts_with("Ma. ")
}

/// How an address was written in a source row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmailMess {
    pub mixed_case: bool,
    pub padded: bool,
}

/// Write a (normalized) address the way people type it: mostly as is, sometimes with capitals,
/// sometimes with spaces around it.
pub fn render_email(
    email: &str,
    rng: &mut Rng,
    mixed_percent: u64,
    padded_percent: u64,
) -> (String, EmailMess) {
    let mut mess = EmailMess::default();
    let mut out = email.to_string();
    if rng.percent(mixed_percent) {
        out = mixed_case(&out, rng.below(3));
        mess.mixed_case = out != email;
    }
    if rng.percent(padded_percent) {
        out = match rng.below(3) {
            0 => format!(" {out}"),
            1 => format!("{out} "),
            _ => format!("  {out} "),
        };
        mess.padded = true;
    }
    (out, mess)
}

/// A different capitalisation of the same address (variant 0, 1 or 2).
pub fn mixed_case(email: &str, variant: u64) -> String {
    match variant {
        0 => email.to_uppercase(),
        1 => capitalize_words(email),
        _ => match email.split_once('@') {
            Some((local, domain)) => {
                format!("{}@{}", capitalize_words(local), domain.to_uppercase())
            }
            None => email.to_uppercase(),
        },
    }
}

fn capitalize_words(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !c.is_ascii_alphanumeric();
    }
    out
}

/// An address that the rules must reject (not `local@domain.tld`).
pub fn invalid_email(email: &str, variant: u64) -> String {
    let (local, domain) = email.split_once('@').unwrap_or((email, "gmail.com"));
    let host = domain.split('.').next().unwrap_or("gmail");
    match variant % 4 {
        0 => format!("{local}@{host}"),
        1 => format!("{local}.{domain}"),
        2 => format!("{local}@{}", domain.replace('.', ",")),
        _ => format!("{local}@"),
    }
}

/// A Philippine mobile number.
pub fn mobile(rng: &mut Rng) -> String {
    format!("+639{:09}", rng.below(1_000_000_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_unique_valid_and_lowercase() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..5000 {
            let p = person(9, i, i % 2 == 0);
            assert!(seen.insert(p.email.clone()));
            assert_eq!(p.email, p.email.trim().to_lowercase());
            let (local, domain) = p.email.split_once('@').unwrap();
            assert!(!local.is_empty() && domain.contains('.'));
            if i % 2 == 0 {
                assert!(!p.last.contains(' '));
            }
        }
    }

    #[test]
    fn invalid_emails_fail_the_simple_rule() {
        for v in 0..4 {
            let bad = invalid_email("juan.santos1@yahoo.com.ph", v);
            let ok = bad.split_once('@').is_some_and(|(l, d)| {
                !l.is_empty()
                    && !d.contains('@')
                    && d.split_once('.')
                        .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty() && !b.ends_with('.'))
            });
            assert!(!ok, "{bad}");
        }
    }

    #[test]
    fn mixed_case_normalizes_back() {
        let e = "ma.cristina.delacruz12@yahoo.com.ph";
        for v in 0..3 {
            let m = mixed_case(e, v);
            assert_ne!(m, e);
            assert_eq!(m.to_lowercase(), e);
        }
    }
}
