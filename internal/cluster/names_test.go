package cluster

import (
	"regexp"
	"testing"
)

func TestWordLists(t *testing.T) {
	t.Parallel()
	word := regexp.MustCompile(`^[a-z]+$`)
	for name, list := range map[string][]string{"adjectives": adjectives, "animals": animals} {
		if len(list) < 150 {
			t.Errorf("%s: %d words, want ≥ 150", name, len(list))
		}
		seen := map[string]bool{}
		for _, w := range list {
			if !word.MatchString(w) {
				t.Errorf("%s: %q is not lowercase ASCII letters", name, w)
			}
			if seen[w] {
				t.Errorf("%s: %q twice", name, w)
			}
			seen[w] = true
		}
	}
}

func TestNamerNeverCollides(t *testing.T) {
	t.Parallel()
	n := NewNamer(42)
	taken := map[string]bool{}
	for range 100 {
		id, err := n.Next(taken)
		if err != nil {
			t.Fatal(err)
		}
		taken[id] = true
	}
	if len(taken) != 100 {
		t.Fatalf("cluster has %d ids, want 100", len(taken))
	}
	for i := range 10000 {
		id, err := n.Next(taken)
		if err != nil {
			t.Fatal(err)
		}
		if taken[id] {
			t.Fatalf("draw %d: %q collides with the cluster", i, id)
		}
		if err := ValidateNodeID(id); err != nil {
			t.Fatalf("draw %d: %v", i, err)
		}
		if len(Hostname("myapp", id)) > 63 {
			t.Fatalf("hostname for %q longer than a DNS label", id)
		}
	}
}

func TestNamerSeeded(t *testing.T) {
	t.Parallel()
	a, _ := NewNamer(7).Next(nil)
	b, _ := NewNamer(7).Next(nil)
	if a != b {
		t.Fatalf("same seed, different ids: %q %q", a, b)
	}
}

func TestNamerExhaustion(t *testing.T) {
	t.Parallel()
	taken := map[string]bool{}
	for i := range len(adjectives) * len(animals) {
		taken[nameAt(i)] = true
	}
	if _, err := NewNamer(1).Next(taken); err == nil {
		t.Fatal("want an error when every id is taken")
	}
}
