//! Shell-style globs for instance names (`include`, `exclude`).

/// A shell-style glob on instance names: `*` any run, `?` one character,
/// everything else literal; the whole name must match.
#[derive(Debug, Clone)]
pub struct Glob {
    pub pattern: String,
    chars: Vec<char>,
}

impl Glob {
    pub fn new(pattern: &str) -> Result<Glob, String> {
        Ok(Glob {
            pattern: pattern.to_string(),
            chars: pattern.chars().collect(),
        })
    }

    /// Iterative matching with one backtrack point (the last `*`): linear
    /// memory and O(n·m) time whatever the name, no recursion.
    pub fn matches(&self, s: &str) -> bool {
        let p = &self.chars;
        let t: Vec<char> = s.chars().collect();
        let (mut pi, mut ti) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while ti < t.len() {
            if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && p[pi] == t[ti])) {
                pi += 1;
                ti += 1;
            } else if pi < p.len() && p[pi] == '*' {
                star = Some((pi, ti));
                pi += 1;
            } else if let Some((sp, st)) = star {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|c| *c == '*')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let g = Glob::new("web-*.prod?").unwrap();
        assert!(g.matches("web-1.prod2"));
        assert!(!g.matches("web-1.prod"));
        assert!(!g.matches("xweb-1.prod2"));
        assert!(Glob::new("a(b").unwrap().matches("a(b"));
        assert!(Glob::new("*").unwrap().matches(""));
        assert!(Glob::new("a*b*c").unwrap().matches("aXbYbZc"));
        assert!(!Glob::new("a*b*c").unwrap().matches("aXbYbZ"));
        assert!(Glob::new("é?").unwrap().matches("éé"));
        assert!(!Glob::new("").unwrap().matches("x"));
    }
}
