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
	HeaderXetHash      = "X-Xet-Hash"
)

// Headers of the Xet token route (HF-PROTOCOL.md §3.1), which
// huggingface_hub reads instead of the JSON body.
const (
	HeaderXetAccessToken = "X-Xet-Access-Token"
	HeaderXetExpiration  = "X-Xet-Token-Expiration"
	HeaderXetCASURL      = "X-Xet-Cas-Url"
)

// XetFileInfoType is the content type of the Hub's Xet "fileinfo" answer to
// resolve, which @huggingface/hub asks for in Accept.
const XetFileInfoType = "application/vnd.xet-fileinfo+json"

// IsXetHash reports whether s is a Xet file or xorb hash: 64 lowercase hex.
func IsXetHash(s string) bool { return isLowerHex(s, 64) }

// XetHeaders are the response headers that make a client switch to Xet; a
// cache that hides Xet removes every one of them.
var XetHeaders = []string{
	"X-Xet-Hash", "X-Xet-Refresh-Route", "X-Xet-Cas-Url",
	"X-Xet-Access-Token", "X-Xet-Token-Expiration", "X-Xet-Endpoint",
}
