package hf

// Error codes the Hub sends in X-Error-Code; clients key their exceptions on them.
const (
	CodeEntryNotFound    = "EntryNotFound"
	CodeRevisionNotFound = "RevisionNotFound"
	CodeRepoNotFound     = "RepoNotFound"
	CodeGatedRepo        = "GatedRepo"
)

// Response headers of the Hub's file contract.
const (
	HeaderRepoCommit   = "X-Repo-Commit"
	HeaderLinkedETag   = "X-Linked-Etag"
	HeaderLinkedSize   = "X-Linked-Size"
	HeaderErrorCode    = "X-Error-Code"
	HeaderErrorMessage = "X-Error-Message"
	HeaderRequestID    = "X-Request-Id"
)

// XetHeaders are the response headers that make a client switch to Xet; a
// cache that hides Xet removes every one of them.
var XetHeaders = []string{
	"X-Xet-Hash", "X-Xet-Refresh-Route", "X-Xet-Cas-Url",
	"X-Xet-Access-Token", "X-Xet-Token-Expiration", "X-Xet-Endpoint",
}
