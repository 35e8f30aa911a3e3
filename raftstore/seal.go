package raftstore

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
)

// sealedPrefix marks a remote token encrypted by a Sealer.
const sealedPrefix = "sealed:v1:"

// ErrUnseal is returned for a sealed token that this cluster secret cannot open.
var ErrUnseal = errors.New("raftstore: cannot decrypt a remote token (different cluster secret?)")

// Sealer encrypts remote tokens before they enter the Raft log, so the log,
// snapshots and bolt files never hold them in the clear. The key is derived
// from the cluster secret: every node of the cluster can open them, nothing
// else can. A nil Sealer (no cluster secret) stores tokens as given.
type Sealer struct {
	aead cipher.AEAD
}

// NewSealer derives the token key from the cluster secret; "" gives nil.
func NewSealer(secret string) *Sealer {
	if secret == "" {
		return nil
	}
	key := sha256.Sum256([]byte("hfcache-config-token\x00" + secret))
	block, err := aes.NewCipher(key[:])
	if err != nil {
		panic(err) // a 32-byte key is always valid
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return &Sealer{aead: aead}
}

// Seal encrypts a token ("" stays "", an already sealed token is kept).
func (s *Sealer) Seal(token string) string {
	if s == nil || token == "" || strings.HasPrefix(token, sealedPrefix) {
		return token
	}
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		panic(err)
	}
	ct := s.aead.Seal(nonce, nonce, []byte(token), []byte(sealedPrefix))
	return sealedPrefix + base64.RawStdEncoding.EncodeToString(ct)
}

// Open decrypts a sealed token; a token stored in the clear is returned as is.
func (s *Sealer) Open(stored string) (string, error) {
	rest, ok := strings.CutPrefix(stored, sealedPrefix)
	if !ok {
		return stored, nil
	}
	if s == nil {
		return "", ErrUnseal
	}
	raw, err := base64.RawStdEncoding.DecodeString(rest)
	if err != nil || len(raw) < s.aead.NonceSize() {
		return "", ErrUnseal
	}
	pt, err := s.aead.Open(nil, raw[:s.aead.NonceSize()], raw[s.aead.NonceSize():], []byte(sealedPrefix))
	if err != nil {
		return "", ErrUnseal
	}
	return string(pt), nil
}
