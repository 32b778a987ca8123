package api

import (
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/modelgate/modelgate/audit"
	"github.com/modelgate/modelgate/fault"
)

// ActorKey is the gin context key under which authentication leaves the
// calling API key's name; the audit log records it.
const ActorKey = "modelgate.key_name"

// actor puts the caller's key name into the request context for the audit
// log of the changes it makes.
func (s *Server) actor(c *gin.Context) {
	if name := c.GetString(ActorKey); name != "" {
		c.Request = c.Request.WithContext(audit.WithActor(c.Request.Context(), name))
	}
	c.Next()
}

// AuditList is the answer of GET /v1/audit: the newest entries first.
type AuditList struct {
	Entries []audit.Entry `json:"entries"`
}

func (s *Server) getAudit(c *gin.Context) {
	if s.auditLog == nil {
		s.writeError(c, fault.New(fault.NotFound, "audit_disabled", "this server keeps no audit log"))
		return
	}
	limit := 100
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			s.writeError(c, fault.Field("limit", "invalid_limit", "must be 1..10000"))
			return
		}
		limit = n
	}
	entries, err := s.auditLog.List(c.Request.Context(), limit)
	if err != nil {
		s.writeError(c, &fault.Error{Kind: fault.Unavailable, Code: "store_unavailable", Message: "reading the audit log", Err: err})
		return
	}
	c.JSON(http.StatusOK, AuditList{Entries: entries})
}
