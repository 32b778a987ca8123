package redisurl

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// parsed is what a test compares of a URL: the fields that decide where a
// client connects and as whom.
type parsed struct {
	sentinel, cluster  bool
	addrs              []string
	master             string
	db                 int
	user, pass         string
	sentUser, sentPass string
	tls                bool
}

func summary(u *URL) parsed {
	if m := u.multi; m != nil {
		return parsed{m.MasterName != "", m.IsClusterMode, m.Addrs, m.MasterName, m.DB, m.Username, m.Password, m.SentinelUsername, m.SentinelPassword, m.TLSConfig != nil}
	}
	o := u.single
	return parsed{false, false, []string{o.Addr}, "", o.DB, o.Username, o.Password, "", "", o.TLSConfig != nil}
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		url  string
		want parsed
	}{
		{"redis://127.0.0.1:6379/0", parsed{addrs: []string{"127.0.0.1:6379"}}},
		{"redis://u:s3cret@db.example:6380/2", parsed{addrs: []string{"db.example:6380"}, db: 2, user: "u", pass: "s3cret"}},
		{"redis://:s3cret@localhost", parsed{addrs: []string{"localhost:6379"}, pass: "s3cret"}},
		{"rediss://db.example:6380/1", parsed{addrs: []string{"db.example:6380"}, db: 1, tls: true}},
		{"redis+sentinel://s1:26379,s2:26380/mymaster",
			parsed{sentinel: true, addrs: []string{"s1:26379", "s2:26380"}, master: "mymaster"}},
		{"redis+sentinel://s1,10.0.0.2,[::1]:26390,[fe80::1]/mymaster/3/",
			parsed{sentinel: true, addrs: []string{"s1:26379", "10.0.0.2:26379", "[::1]:26390", "[fe80::1]:26379"}, master: "mymaster", db: 3}},
		{"redis+sentinel://app:p%40ss@s1:26379/my%20master/1",
			parsed{sentinel: true, addrs: []string{"s1:26379"}, master: "my master", db: 1, user: "app", pass: "p@ss"}},
		{"redis+sentinel://:s3cret@s1:26379/m?sentinel_password=x&sentinel_username=sent",
			parsed{sentinel: true, addrs: []string{"s1:26379"}, master: "m", pass: "s3cret", sentUser: "sent", sentPass: "x"}},
		{"rediss+sentinel://s1:26379,s2:26379/m/0",
			parsed{sentinel: true, addrs: []string{"s1:26379", "s2:26379"}, master: "m", tls: true}},
		{"REDIS+SENTINEL://s1:26379/m", parsed{sentinel: true, addrs: []string{"s1:26379"}, master: "m"}},
		{"redis+cluster://a:7000,b:7001,c", parsed{cluster: true, addrs: []string{"a:7000", "b:7001", "c:6379"}}},
		{"redis+cluster://app:p%40ss@10.0.0.1:7000,[::1]:7001/", parsed{cluster: true, addrs: []string{"10.0.0.1:7000", "[::1]:7001"}, user: "app", pass: "p@ss"}},
		{"redis+cluster://:s3cret@a:7000/0", parsed{cluster: true, addrs: []string{"a:7000"}, pass: "s3cret"}},
		{"rediss+cluster://a:7000,b:7000", parsed{cluster: true, addrs: []string{"a:7000", "b:7000"}, tls: true}},
	} {
		t.Run(tc.url, func(t *testing.T) {
			u, err := Parse(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			if got := summary(u); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("parsed %+v; want %+v", got, tc.want)
			}
			if u.Sentinel() != tc.want.sentinel || u.Cluster() != tc.want.cluster {
				t.Fatalf("Sentinel() = %v, Cluster() = %v", u.Sentinel(), u.Cluster())
			}
			if strings.Contains(u.Addr(), "s3cret") {
				t.Fatalf("Addr() %q holds the password", u.Addr())
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		url, want string
	}{
		{"", "no scheme"},
		{"localhost:6379", "no scheme"},
		{"http://localhost:6379", `scheme "http" is not one of redis://, rediss://, redis+sentinel://, rediss+sentinel://, redis+cluster:// or rediss+cluster://`},
		{"redis+cluster://", "redis+cluster://: no cluster node address"},
		{"redis+cluster://u:s3cret@a:6379,,b", "an empty cluster node address"},
		{"rediss+cluster://u:s3cret@a:6379/2", "rediss+cluster://: path /2: a cluster has database 0 only"},
		{"redis+cluster://u:s3cret@a:6379?pool_size=3", "query options are not supported in a cluster URL"},
		{"redis+cluster://a:99999", `cluster node address "a:99999": port "99999" is not a number from 1 to 65535`},
		{"redis://localhost:6379/x", `invalid database number: "x"`},
		{"redis://u:s3cret@local host:6379/0", "invalid character"},
		{"redis://localhost:6379/0?bogus=1", "unexpected option: bogus"},
		{"redis+sentinel:///mymaster", "no sentinel address"},
		{"redis+sentinel://u:s3cret@/mymaster", "no sentinel address"},
		{"redis+sentinel://s1:26379", "no master name"},
		{"redis+sentinel://s1:26379/", "no master name"},
		{"redis+sentinel://s1:26379//0", `master name "" is empty`},
		{"redis+sentinel://s1:26379/m/x", `database "x" is not a number ≥ 0`},
		{"redis+sentinel://s1:26379/m/-1", `database "-1" is not a number ≥ 0`},
		{"redis+sentinel://s1:26379/m/0/extra", "path /m/0/extra has 3 parts; want /MASTER_NAME[/db]"},
		{"redis+sentinel://s1:26379,,s2/m", "an empty sentinel address"},
		{"redis+sentinel://s1:26379,/m", "an empty sentinel address"},
		{"redis+sentinel://s1:port/m", `sentinel address "s1:port": port "port" is not a number from 1 to 65535`},
		{"redis+sentinel://s1:0/m", `port "0" is not a number from 1 to 65535`},
		{"redis+sentinel://:26379/m", `sentinel address ":26379" has no host`},
		{"redis+sentinel://fe80::1/m", `sentinel address "fe80::1": put an IPv6 address in brackets`},
		{"redis+sentinel://[fe80::1/m", `sentinel address "[fe80::1": want host:port`},
		{"redis+sentinel://u:s3cret@s1:26379/m?db=2", `query option "db" is not supported; only sentinel_username and sentinel_password are`},
		{"redis+sentinel://u:%zz@s1:26379/m", "the password is not valid percent-encoding"},
		{"redis+sentinel://%zz:s3cret@s1:26379/m", "the user name is not valid percent-encoding"},
		{"redis+sentinel://s1:26379/m?sentinel_password=%zz", "query: "},
	} {
		t.Run(tc.url, func(t *testing.T) {
			u, err := Parse(tc.url)
			if err == nil {
				t.Fatalf("parsed as %+v; want an error", summary(u))
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q; want it to say %q", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "redis url: ") {
				t.Fatalf("error %q does not say it is about the Redis URL", err)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("error %q repeats the password", err)
			}
		})
	}
}

// TestNewClientTuning checks that both kinds of client get the caller's
// deadlines and never retry, and that a client does not share the parsed
// URL's options (two clients of one URL differ in their tuning).
func TestNewClientTuning(t *testing.T) {
	for _, raw := range []string{"redis://127.0.0.1:1/0", "redis+sentinel://127.0.0.1:1/m/0", "redis+cluster://127.0.0.1:1,127.0.0.1:2"} {
		t.Run(raw, func(t *testing.T) {
			u, err := Parse(raw)
			if err != nil {
				t.Fatal(err)
			}
			hot := u.NewClient(Tuning{PoolSize: 3, DialTimeout: time.Second, ReadTimeout: 50 * time.Millisecond, WriteTimeout: 60 * time.Millisecond})
			defer hot.Close()
			admin := u.NewClient(Tuning{DialTimeout: time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second})
			defer admin.Close()
			o := options(hot)
			if o.PoolSize != 3 || o.ReadTimeout != 50*time.Millisecond || o.WriteTimeout != 60*time.Millisecond || o.DialTimeout != time.Second {
				t.Fatalf("hot client: pool %d, read %v, write %v, dial %v", o.PoolSize, o.ReadTimeout, o.WriteTimeout, o.DialTimeout)
			}
			if o.MaxRetries != 0 || o.DialerRetries != 1 || !o.ContextTimeoutEnabled {
				t.Fatalf("hot client: max retries %d (want 0 after go-redis reads -1), dialer retries %d, context timeouts %v", o.MaxRetries, o.DialerRetries, o.ContextTimeoutEnabled)
			}
			if a := options(admin); a.ReadTimeout != 2*time.Second || a.PoolSize == 3 {
				t.Fatalf("admin client: read %v, pool %d: it shares the hot client's tuning", a.ReadTimeout, a.PoolSize)
			}
			if o.DB != 0 {
				t.Fatalf("db %d", o.DB)
			}
		})
	}
}

// options are a client's settings in the form of a single server's; a
// cluster client's are those its per-node clients get.
func options(c redis.UniversalClient) *redis.Options {
	if cc, ok := c.(*redis.ClusterClient); ok {
		o := cc.Options()
		retries := o.MaxRetries
		if retries == -1 {
			retries = 0 // as go-redis reads it for a node's client
		}
		return &redis.Options{PoolSize: o.PoolSize, DialTimeout: o.DialTimeout, ReadTimeout: o.ReadTimeout, WriteTimeout: o.WriteTimeout,
			MaxRetries: retries, DialerRetries: o.DialerRetries, ContextTimeoutEnabled: o.ContextTimeoutEnabled}
	}
	return c.(interface{ Options() *redis.Options }).Options()
}
