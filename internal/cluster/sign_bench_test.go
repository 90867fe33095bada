package cluster

import (
	"bytes"
	"crypto/ed25519"
	"testing"

	"github.com/dynia/dynia/internal/signing"
)

// BenchmarkDecodeSigned is what a node pays per new state: verify and
// decode (cf. BenchmarkDecode, unsigned), with the envelope's size.
func BenchmarkDecodeSigned(b *testing.B) {
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	s := sample(&testing.T{})
	s.SigningKey = signing.PublicKeyString(signing.Public(key))
	plain, err := s.Encode()
	if err != nil {
		b.Fatal(err)
	}
	signed, err := s.EncodeSigned(key)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(len(signed)-len(plain)), "envelope-bytes")
	b.ReportMetric(float64(len(signed)), "object-bytes")
	pub := signing.Public(key)
	b.Run("signed", func(b *testing.B) {
		for b.Loop() {
			if _, err := DecodeSigned(signed, pub); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("unsigned", func(b *testing.B) {
		for b.Loop() {
			if _, err := Decode(plain); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sign", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.EncodeSigned(key); err != nil {
				b.Fatal(err)
			}
		}
	})
}
