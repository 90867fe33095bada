package dosim

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// Image is a droplet image: a public distribution image (Type "base", with a
// Slug) or a private snapshot (Type "snapshot", no slug), e.g. Packer output.
type Image struct {
	ID            int
	Name          string
	Type          string // base, snapshot, backup, custom
	Distribution  string // spec enum: Debian, Ubuntu, Unknown, ...
	Slug          string
	Public        bool
	Regions       []string
	CreatedAt     time.Time
	MinDiskSize   int
	SizeGigabytes float64
	Description   string
	Tags          []string
	Status        string // available
}

// RegisterImage adds a private image (a snapshot unless Type says otherwise)
// and returns its id. Zero fields get DO-like defaults; CreatedAt defaults to
// now and Regions to every region.
func (s *Server) RegisterImage(img Image) int {
	s.init()
	var id int
	s.update(func() {
		if img.ID == 0 {
			img.ID = s.nextImageID
			s.nextImageID++
		}
		if img.Type == "" {
			img.Type = "snapshot"
		}
		if img.Distribution == "" {
			img.Distribution = "Debian"
		}
		if len(img.Regions) == 0 {
			img.Regions = append([]string(nil), s.opts.Regions...)
		}
		if img.CreatedAt.IsZero() {
			img.CreatedAt = s.opts.Now()
		}
		img.CreatedAt = img.CreatedAt.UTC()
		if img.MinDiskSize == 0 {
			img.MinDiskSize = 10
		}
		if img.SizeGigabytes == 0 {
			img.SizeGigabytes = 2.36
		}
		if img.Status == "" {
			img.Status = "available"
		}
		if img.Tags == nil {
			img.Tags = []string{}
		}
		c := img
		s.images[c.ID] = &c
		id = c.ID
	})
	return id
}

// Images returns every image (public and private), ordered by id.
func (s *Server) Images() []Image {
	s.init()
	var out []Image
	s.update(func() {
		for _, id := range sortedKeys(s.images) {
			out = append(out, *s.images[id])
		}
	})
	return out
}

func imageJSON(im *Image) map[string]any {
	var slug any
	if im.Slug != "" {
		slug = im.Slug
	}
	tags := im.Tags
	if tags == nil {
		tags = []string{}
	}
	return map[string]any{"id": im.ID, "name": im.Name, "type": im.Type, "distribution": im.Distribution,
		"slug": slug, "public": im.Public, "regions": im.Regions, "created_at": im.CreatedAt.Format(time.RFC3339),
		"min_disk_size": im.MinDiskSize, "size_gigabytes": im.SizeGigabytes, "description": im.Description,
		"tags": tags, "status": im.Status, "error_message": ""}
}

func (s *Server) listImages(q *request) {
	v := q.r.URL.Query()
	private, typ, tag := v.Get("private") == "true", v.Get("type"), v.Get("tag_name")
	q.do(func() (int, any) {
		var out []map[string]any
		for _, id := range sortedKeys(s.images) {
			im := s.images[id]
			if private && im.Public {
				continue
			}
			switch typ {
			case "":
			case "distribution":
				if im.Type != "base" || !im.Public {
					continue
				}
			case "application":
				continue
			default:
				if im.Type != typ {
					continue
				}
			}
			if tag != "" && !containsString(im.Tags, tag) {
				continue
			}
			out = append(out, imageJSON(im))
		}
		return paged(q, "images", out)
	})
}

// imageParam resolves an image id or slug.
func (s *Server) imageParam(q *request) *Image {
	p := q.param("id")
	if id, err := strconv.Atoi(p); err == nil {
		return s.images[id]
	}
	for _, id := range sortedKeys(s.images) {
		if im := s.images[id]; im.Slug == p {
			return im
		}
	}
	return nil
}

func (s *Server) getImage(q *request) {
	q.do(func() (int, any) {
		im := s.imageParam(q)
		if im == nil {
			return notFound()
		}
		return http.StatusOK, map[string]any{"image": imageJSON(im)}
	})
}

func (s *Server) updateImage(q *request) {
	var req struct {
		Name         *string `json:"name"`
		Description  *string `json:"description"`
		Distribution *string `json:"distribution"`
	}
	if !q.decode(&req) {
		return
	}
	q.do(func() (int, any) {
		im := s.imageParam(q)
		if im == nil {
			return notFound()
		}
		if im.Public {
			return fail(http.StatusForbidden, "You are not authorized to perform this operation")
		}
		if req.Name != nil {
			im.Name = *req.Name
		}
		if req.Description != nil {
			im.Description = *req.Description
		}
		if req.Distribution != nil {
			im.Distribution = *req.Distribution
		}
		return http.StatusOK, map[string]any{"image": imageJSON(im)}
	})
}

func (s *Server) deleteImage(q *request) {
	q.do(func() (int, any) {
		im := s.imageParam(q)
		if im == nil {
			return notFound()
		}
		if im.Public {
			return fail(http.StatusForbidden, "You are not authorized to perform this operation")
		}
		delete(s.images, im.ID)
		return http.StatusNoContent, nil
	})
}

func snapshotJSON(im *Image) map[string]any {
	tags := im.Tags
	if tags == nil {
		tags = []string{}
	}
	return map[string]any{"id": strconv.Itoa(im.ID), "name": im.Name, "created_at": im.CreatedAt.Format(time.RFC3339),
		"regions": im.Regions, "min_disk_size": im.MinDiskSize, "size_gigabytes": im.SizeGigabytes,
		"resource_id": "0", "resource_type": "droplet", "tags": tags}
}

func (s *Server) listSnapshots(q *request) {
	rt := q.r.URL.Query().Get("resource_type")
	q.do(func() (int, any) {
		var out []map[string]any
		if rt == "" || rt == "droplet" {
			for _, id := range sortedKeys(s.images) {
				if im := s.images[id]; im.Type == "snapshot" && !im.Public {
					out = append(out, snapshotJSON(im))
				}
			}
		}
		return paged(q, "snapshots", out)
	})
}

func (s *Server) snapshotParam(q *request) *Image {
	id, err := strconv.Atoi(q.param("id"))
	if err != nil {
		return nil
	}
	if im := s.images[id]; im != nil && im.Type == "snapshot" && !im.Public {
		return im
	}
	return nil
}

func (s *Server) getSnapshot(q *request) {
	q.do(func() (int, any) {
		im := s.snapshotParam(q)
		if im == nil {
			return notFound()
		}
		return http.StatusOK, map[string]any{"snapshot": snapshotJSON(im)}
	})
}

func (s *Server) deleteSnapshot(q *request) {
	q.do(func() (int, any) {
		im := s.snapshotParam(q)
		if im == nil {
			return notFound()
		}
		delete(s.images, im.ID)
		return http.StatusNoContent, nil
	})
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }
