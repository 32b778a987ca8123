package gateway

import (
	"bytes"
	"net/http/httptest"
	"testing"

	"github.com/modelgate/modelgate/internal/redistest"
)

// benchRecommend measures recommend through the HTTP handler (no network)
// on an app with the given Redis URL ("" = the embedded store). Background
// work (flushes, refreshes) runs as in production.
func benchRecommend(b *testing.B, redisURL string) {
	cfg := demoConfig(b, "")
	cfg.RedisURL = redisURL
	a := startApp(b, cfg)
	defer a.stop()
	h := a.srv.Handler()
	body := []byte(`{"user_id": "u42", "k": 10}`)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/endpoints/home/recommend", bytes.NewReader(body)))
		if rec.Code != 200 {
			b.Fatalf("status %d", rec.Code)
		}
	}
}

func BenchmarkRecommendEmbeddedStore(b *testing.B) { benchRecommend(b, "") }

func BenchmarkRecommendRedisStore(b *testing.B) {
	rs := redistest.Start(b, redistest.Options{})
	benchRecommend(b, rs.URL())
}
