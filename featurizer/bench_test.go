package featurizer

import "testing"

// BenchmarkBuild builds API.md's example spec (eight inputs: every transform,
// a 20-long padded list, three candidates) from a full request.
func BenchmarkBuild(b *testing.B) {
	p := apiExample(b)
	req := fullRequest()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Build(req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBuildParallel is BenchmarkBuild from every P at once: Build shares
// nothing mutable, so it should scale with the cores.
func BenchmarkBuildParallel(b *testing.B) {
	p := apiExample(b)
	req := fullRequest()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := p.Build(req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkParse(b *testing.B) {
	raw := apiExample(b).Raw()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(raw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkHashBucket(b *testing.B) {
	for b.Loop() {
		HashBucket("user-1234567", 100000)
	}
}
