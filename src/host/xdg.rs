//! The user's folders. The state folder comes from etcetera's XDG strategy on every Unix:
//! `$XDG_STATE_HOME` when it is absolute, else `~/.local/state`. `dirs::state_dir()` gives the
//! same on Linux but None on macOS, which silently turned shared SSH connections, the REPL's
//! history and the editor's private folder off there. The config folder stays `dirs`'s (the
//! platform's own, `~/Library/Application Support` on macOS), where users' keys already are.

use std::path::PathBuf;

use etcetera::BaseStrategy;

/// `$XDG_STATE_HOME`, else `~/.local/state`, on Linux and macOS alike; None without a home.
pub fn state_dir() -> Option<PathBuf> {
    etcetera::base_strategy::Xdg::new().ok()?.state_dir()
}

/// The platform's config folder (`$XDG_CONFIG_HOME`, else `~/.config` on Linux).
pub fn config_dir() -> Option<PathBuf> {
    dirs::config_dir()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    #[test]
    fn state_dir_is_under_home_or_the_variable() {
        let dir = super::state_dir().expect("a home folder");
        match std::env::var_os("XDG_STATE_HOME").map(PathBuf::from) {
            Some(v) if v.is_absolute() => assert_eq!(dir, v),
            _ => assert_eq!(dir, dirs::home_dir().unwrap().join(".local/state")),
        }
        // On Linux, exactly what dirs gave before.
        #[cfg(target_os = "linux")]
        assert_eq!(dir.join("wsm"), dirs::state_dir().unwrap().join("wsm"));
    }
}
