package bench

import (
	"fmt"
	"math"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// plotFailover draws each failover row's outages as points (jittered
// sideways) with its median marked: the distribution, not only its p50.
func (r *Runner) plotFailover(groups []failoverGroup) *Plot {
	p := plot.New()
	p.Title.Text = "Failover: outage per power-off"
	p.Y.Label.Text = "outage (s)"
	var names []string
	for i, g := range groups {
		var pts plotter.XYs
		for j, o := range g.outages {
			if o < 0 {
				continue
			}
			jitter := (float64(j%7) - 3) * 0.04
			pts = append(pts, plotter.XY{X: float64(i) + jitter, Y: o.Seconds()})
		}
		if len(pts) > 0 {
			sc, err := plotter.NewScatter(pts)
			if err != nil {
				continue
			}
			sc.GlyphStyle.Radius = vg.Points(2)
			p.Add(sc)
		}
		if m := Summarize(Seconds(g.outages)).P50; !math.IsNaN(m) && !math.IsInf(m, 0) {
			line, err := plotter.NewLine(plotter.XYs{{X: float64(i) - 0.3, Y: m}, {X: float64(i) + 0.3, Y: m}})
			if err == nil {
				line.Width = vg.Points(1.5)
				p.Add(line)
			}
		}
		names = append(names, fmt.Sprintf("%s\n%s\nassign %s", g.setup, shortVariant(g.variant), assignName(g.assign)))
	}
	p.NominalX(names...)
	p.Y.Min = 0
	return r.savePlot(p, "failover.png", 9, 4.5, "Outage per power-off, every run (dots) and the median (bar), per setup, VRRP setting and assignment time.")
}

// shortVariant is "advert 1 s (VRRPv2)" without the parenthesis.
func shortVariant(v string) string {
	s, _, _ := strings.Cut(v, " (")
	return s
}

// plotConvergence draws p50 and p95 convergence against cluster size,
// with the target (poll + 1 s).
func (r *Runner) plotConvergence(points []convPoint) *Plot {
	p := plot.New()
	p.Title.Text = "Convergence: state written → every node serving"
	p.X.Label.Text = "nodes"
	p.Y.Label.Text = "seconds"
	var p50, p95, tgt plotter.XYs
	for _, c := range points {
		p50 = append(p50, plotter.XY{X: float64(c.nodes), Y: c.s.P50})
		p95 = append(p95, plotter.XY{X: float64(c.nodes), Y: c.s.P95})
		tgt = append(tgt, plotter.XY{X: float64(c.nodes), Y: 3})
	}
	for _, l := range []struct {
		name string
		xy   plotter.XYs
		dash bool
	}{{"p50", p50, false}, {"p95", p95, false}, {"target p95 (poll 2 s + 1 s)", tgt, true}} {
		line, pts, err := plotter.NewLinePoints(l.xy)
		if err != nil {
			continue
		}
		if l.dash {
			line.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
			pts.Radius = 0
		}
		p.Add(line, pts)
		p.Legend.Add(l.name, line)
	}
	p.Legend.Top = true
	p.Y.Min = 0
	return r.savePlot(p, "convergence.png", 6, 4, "Convergence p50 and p95 by cluster size; the dashed line is the target.")
}

func (r *Runner) savePlot(p *plot.Plot, name string, w, h vg.Length, caption string) *Plot {
	if err := p.Save(w*vg.Inch, h*vg.Inch, r.Path(name)); err != nil {
		r.Logf("plot %s: %v", name, err)
		return nil
	}
	return &Plot{File: name, Caption: caption}
}
