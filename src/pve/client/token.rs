//! The API token proxfleet authenticates with, `user@realm!tokenid=secret`: parsed and checked
//! before any request, and printable only without its secret.

use crate::pve::PveError;
use crate::secret::Secret;

/// An API token `user@realm!tokenid=secret`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// `user@realm`.
    pub user: String,
    /// Token id.
    pub token_id: String,
    pub(super) secret: Secret,
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiToken({}=***)", self.id())
    }
}

impl ApiToken {
    /// Parse `user@realm!tokenid=secret` (split at the last `=`).
    ///
    /// # Errors
    /// [`PveError::InvalidToken`], whose message never contains the secret.
    pub fn parse(text: &str) -> Result<ApiToken, PveError> {
        let invalid = |reason: &str| PveError::InvalidToken {
            reason: reason.to_string(),
        };
        let (id, secret) = text
            .trim()
            .rsplit_once('=')
            .ok_or_else(|| invalid("expected user@realm!tokenid=secret (no `=` found)"))?;
        let (user, token_id) = id.split_once('!').ok_or_else(|| {
            invalid("expected user@realm!tokenid=secret (no `!` in the token id)")
        })?;
        let realm_ok = user
            .split_once('@')
            .is_some_and(|(u, r)| !u.is_empty() && !r.is_empty());
        if !realm_ok {
            return Err(invalid(
                "the user must be user@realm, e.g. root@pam or proxfleet@pve",
            ));
        }
        if token_id.is_empty()
            || !token_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(invalid(
                "the token id must be letters, digits, `-`, `_` or `.`",
            ));
        }
        if secret.is_empty() {
            return Err(invalid("the secret after `=` is empty"));
        }
        Ok(ApiToken {
            user: user.to_string(),
            token_id: token_id.to_string(),
            secret: Secret::new(secret),
        })
    }

    /// `user@realm!tokenid`, safe to print.
    pub fn id(&self) -> String {
        format!("{}!{}", self.user, self.token_id)
    }
}

impl std::str::FromStr for ApiToken {
    type Err = PveError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ApiToken::parse(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_and_never_show_their_secret() {
        let token =
            ApiToken::parse("proxfleet@pve!ci=d3adb33f-0000-4000-8000-c0ffee000001").unwrap();
        assert_eq!(token.id(), "proxfleet@pve!ci");
        assert_eq!(
            token.secret.expose(),
            "d3adb33f-0000-4000-8000-c0ffee000001"
        );
        assert!(!format!("{token:?}").contains("d3adb33f"));
        for bad in [
            "root@pam",
            "root@pam!=x",
            "root!ci=x",
            "root@pam!ci=",
            "@pam!ci=sekret",
        ] {
            let err = ApiToken::parse(bad).unwrap_err().to_string();
            assert!(!err.contains("sekret"), "{err}");
        }
    }
}
