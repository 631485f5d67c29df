/* report.c - a chaos run's report: FILE.json (parameters, events, lag samples) and FILE.svg
 * (per-node lag over time, the faults shaded, kills and stops marked). */
#include "tn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void tn_report_event(tn_report *r, uint64_t t_ms, const char *kind, const char *fmt, ...)
{
    if (r->nevents == r->capevents) {
        size_t ncap = r->capevents * 2 + 256;
        tn_event *ne = realloc(r->events, ncap * sizeof *ne);
        if (ne == NULL)
            return; /* the report loses an event; the run goes on */
        r->events = ne;
        r->capevents = ncap;
    }
    tn_event *e = &r->events[r->nevents++];
    e->t_ms = t_ms;
    snprintf(e->kind, sizeof e->kind, "%s", kind);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->what, sizeof e->what, fmt, ap);
    va_end(ap);
}

void tn_report_sample(tn_report *r, const tn_sample *s)
{
    if (r->nsamples == r->capsamples) {
        size_t ncap = r->capsamples * 2 + 256;
        tn_sample *ns = realloc(r->samples, ncap * sizeof *ns);
        if (ns == NULL)
            return;
        r->samples = ns;
        r->capsamples = ncap;
    }
    r->samples[r->nsamples++] = *s;
}

void tn_report_fini(tn_report *r)
{
    free(r->events);
    free(r->samples);
    memset(r, 0, sizeof *r);
}

/* A fault interval for the picture: from an event that starts it to the one that ends it. */
typedef struct span {
    double t0, t1;
    char label[200];
    int kind; /* 0 partition/slow, 1 stop, 2 kill */
} span;

static void xml_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '<')
            fputs("&lt;", f);
        else if (*s == '>')
            fputs("&gt;", f);
        else if (*s == '&')
            fputs("&amp;", f);
        else if (*s == '"')
            fputs("&quot;", f);
        else
            fputc(*s, f);
    }
}

static int write_svg(const char *path, const tn_net *net, const tn_report *r)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        tn_err("cannot write %s: %s", path, strerror(errno));
        return -1;
    }
    double tmax = 1.0;
    int64_t lmax = 1;
    for (size_t k = 0; k < r->nsamples; k++) {
        if ((double)r->samples[k].t_ms / 1000.0 > tmax)
            tmax = (double)r->samples[k].t_ms / 1000.0;
        for (size_t i = 0; i < net->n; i++)
            if (r->samples[k].lag[i] > lmax)
                lmax = r->samples[k].lag[i];
    }
    for (size_t k = 0; k < r->nevents; k++)
        if ((double)r->events[k].t_ms / 1000.0 > tmax)
            tmax = (double)r->events[k].t_ms / 1000.0;
    /* Fault spans: partition/slow until heal; stop until cont; kill until restart. */
    size_t nspans = 0, cap = 64;
    span *spans = malloc(cap * sizeof *spans);
    for (size_t k = 0; spans != NULL && k < r->nevents; k++) {
        const tn_event *e = &r->events[k];
        if (strcmp(e->kind, "fault") != 0)
            continue;
        double t = (double)e->t_ms / 1000.0;
        const char *w = e->what;
        if (strncmp(w, "heal", 4) == 0) {
            for (size_t s = 0; s < nspans; s++)
                if (spans[s].kind == 0 && spans[s].t1 < 0)
                    spans[s].t1 = t;
            continue;
        }
        if (strncmp(w, "cont ", 5) == 0 || strncmp(w, "restart ", 8) == 0) {
            const char *name = strchr(w, ' ') + 1;
            for (size_t s = 0; s < nspans; s++)
                if (spans[s].kind != 0 && spans[s].t1 < 0 && strstr(spans[s].label, name))
                    spans[s].t1 = t;
            continue;
        }
        int kind = strncmp(w, "stop ", 5) == 0 ? 1 : strncmp(w, "kill ", 5) == 0 ? 2 : 0;
        if (strncmp(w, "partition", 9) != 0 && strncmp(w, "slow", 4) != 0 && kind == 0)
            continue;
        if (nspans == cap) {
            span *ns = realloc(spans, cap * 2 * sizeof *ns);
            if (ns == NULL)
                break;
            spans = ns;
            cap *= 2;
        }
        spans[nspans] = (span) { t, -1.0, "", kind };
        snprintf(spans[nspans].label, sizeof spans[nspans].label, "%s", w);
        nspans++;
    }
    const double W = 1000, H = 420, L = 60, R = 160, T = 30, B = 40;
    const double pw = W - L - R, ph = H - T - B;
    static const char *const colors[] = { "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
        "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf" };
    fprintf(f,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
        "font-family=\"sans-serif\" font-size=\"11\">\n",
        W, H);
    fprintf(f, "<rect width=\"%.0f\" height=\"%.0f\" fill=\"white\"/>\n", W, H);
    fprintf(f,
        "<text x=\"%.0f\" y=\"18\" font-size=\"14\">per-node lag (headers behind the most "
        "advanced node) over time</text>\n",
        L);
    for (size_t s = 0; s < nspans; s++) {
        double t1 = spans[s].t1 < 0 ? tmax : spans[s].t1;
        double x0 = L + pw * spans[s].t0 / tmax, x1 = L + pw * t1 / tmax;
        const char *fill = spans[s].kind == 0 ? "#f4c7c3"
            : spans[s].kind == 1              ? "#fce8b2"
                                              : "#d7d7d7";
        double band = spans[s].kind == 0 ? 0 : ph * 0.85;
        fprintf(f,
            "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\" "
            "opacity=\"0.6\"><title>",
            x0, T + band, x1 - x0 > 1 ? x1 - x0 : 1, ph - band, fill);
        xml_text(f, spans[s].label);
        fprintf(f, " (%.1f-%.1f s)</title></rect>\n", spans[s].t0, t1);
    }
    fprintf(f,
        "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"black\"/>\n"
        "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"black\"/>\n",
        L, T + ph, L + pw, T + ph, L, T, L, T + ph);
    for (int k = 0; k <= 4; k++) {
        double y = T + ph - ph * k / 4.0;
        fprintf(f, "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%.0f</text>\n", L - 5, y + 4,
            (double)lmax * k / 4.0);
        double x = L + pw * k / 4.0;
        fprintf(f, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">%.1f s</text>\n", x,
            T + ph + 16, tmax * k / 4.0);
    }
    for (size_t i = 0; i < net->n; i++) {
        const char *col = colors[i % 10];
        /* One polyline per stretch of samples: a node that did not answer is a gap. */
        bool open = false;
        for (size_t k = 0; k < r->nsamples; k++) {
            if (r->samples[k].lag[i] < 0) {
                if (open)
                    fputs("\"/>\n", f);
                open = false;
                continue;
            }
            if (!open)
                fprintf(
                    f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", col);
            open = true;
            fprintf(f, "%.1f,%.1f ", L + pw * ((double)r->samples[k].t_ms / 1000.0) / tmax,
                T + ph - ph * (double)r->samples[k].lag[i] / (double)lmax);
        }
        if (open)
            fputs("\"/>\n", f);
        fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" fill=\"%s\">%s</text>\n", L + pw + 10,
            T + 14.0 * (double)i + 10, col, net->nodes[i].name);
    }
    double ly = T + 14.0 * (double)net->n + 24;
    fprintf(f,
        "<rect x=\"%.0f\" y=\"%.0f\" width=\"10\" height=\"10\" fill=\"#f4c7c3\"/>"
        "<text x=\"%.0f\" y=\"%.0f\">partition / slow link</text>\n"
        "<rect x=\"%.0f\" y=\"%.0f\" width=\"10\" height=\"10\" fill=\"#fce8b2\"/>"
        "<text x=\"%.0f\" y=\"%.0f\">node stopped</text>\n"
        "<rect x=\"%.0f\" y=\"%.0f\" width=\"10\" height=\"10\" fill=\"#d7d7d7\"/>"
        "<text x=\"%.0f\" y=\"%.0f\">node killed</text>\n",
        L + pw + 10, ly, L + pw + 24, ly + 9, L + pw + 10, ly + 16, L + pw + 24, ly + 25,
        L + pw + 10, ly + 32, L + pw + 24, ly + 41);
    fprintf(f, "</svg>\n");
    free(spans);
    if (fclose(f) != 0) {
        tn_err("cannot write %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

int tn_report_write(const char *path, const tn_net *net, const tn_report *r, json_object *head)
{
    json_object *doc = json_object_new_object();
    json_object_object_add(doc, "run", json_object_get(head));
    json_object *names = json_object_new_array();
    for (size_t i = 0; i < net->n; i++)
        json_object_array_add(names, json_object_new_string(net->nodes[i].name));
    json_object_object_add(doc, "node_names", names);
    json_object *ev = json_object_new_array();
    for (size_t k = 0; k < r->nevents; k++) {
        json_object *e = json_object_new_object();
        json_object_object_add(e, "t", json_object_new_double((double)r->events[k].t_ms / 1e3));
        json_object_object_add(e, "kind", json_object_new_string(r->events[k].kind));
        json_object_object_add(e, "what", json_object_new_string(r->events[k].what));
        json_object_array_add(ev, e);
    }
    json_object_object_add(doc, "events", ev);
    json_object *sm = json_object_new_array();
    for (size_t k = 0; k < r->nsamples; k++) {
        json_object *s = json_object_new_object(), *lag = json_object_new_object();
        json_object_object_add(s, "t", json_object_new_double((double)r->samples[k].t_ms / 1e3));
        for (size_t i = 0; i < net->n; i++)
            json_object_object_add(lag, net->nodes[i].name,
                r->samples[k].lag[i] < 0 ? NULL : json_object_new_int64(r->samples[k].lag[i]));
        json_object_object_add(s, "lag", lag);
        json_object_array_add(sm, s);
    }
    json_object_object_add(doc, "lag_samples", sm);
    int rc = tn_write_file(path, json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PRETTY));
    json_object_put(doc);
    if (rc != 0) {
        tn_err("cannot write %s: %s", path, strerror(errno));
        return -1;
    }
    char svg[TN_PATH_MAX];
    size_t len = strlen(path);
    if (len > 5 && strcmp(path + len - 5, ".json") == 0)
        tn_path(svg, sizeof svg, "%.*s.svg", (int)(len - 5), path);
    else
        tn_path(svg, sizeof svg, "%s.svg", path);
    return write_svg(svg, net, r);
}
