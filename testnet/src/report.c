/* report.c - a chaos run's report: FILE.json (parameters, events, lag samples) and FILE.svg
 * (per-node lag over time, the faults shaded, kills and stops marked). */
#include "tn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void tn_report_init(tn_report *r)
{
    memset(r, 0, sizeof *r);
    tn_vec_init(&r->events, sizeof(tn_event), TN_REPORT_EVENTS_MAX);
    tn_vec_init(&r->samples, sizeof(tn_sample), TN_REPORT_SAMPLES_MAX);
}

void tn_report_event(tn_report *r, uint64_t t_ms, const char *kind, const char *fmt, ...)
{
    tn_event *e = tn_vec_push(&r->events, NULL);
    if (e == NULL) {
        r->dropped_events++; /* the report loses an event (and says so); the run goes on */
        return;
    }
    e->t_ms = t_ms;
    snprintf(e->kind, sizeof e->kind, "%s", kind);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->what, sizeof e->what, fmt, ap);
    va_end(ap);
}

void tn_report_sample(tn_report *r, const tn_sample *s)
{
    tn_sample *to = tn_vec_push(&r->samples, NULL);
    if (to == NULL)
        r->dropped_samples++;
    else
        *to = *s;
}

const tn_sample *tn_report_last(const tn_report *r)
{
    return r->samples.n > 0 ? TN_VEC_AT(&r->samples, tn_sample, r->samples.n - 1) : NULL;
}

void tn_report_fini(tn_report *r)
{
    tn_vec_fini(&r->events);
    tn_vec_fini(&r->samples);
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

/* The fault spans of the events: partition/slow until heal; stop until cont; kill until
 * restart. At most one per event. */
static tn_err fault_spans(const tn_report *r, tn_vec *spans)
{
    const tn_event *events = r->events.items;
    for (size_t k = 0; k < r->events.n; k++) {
        const tn_event *e = &events[k];
        if (strcmp(e->kind, "fault") != 0)
            continue;
        double t = (double)e->t_ms / 1000.0;
        const char *w = e->what;
        span *open = spans->items;
        if (strncmp(w, "heal", 4) == 0) {
            for (size_t s = 0; s < spans->n; s++)
                if (open[s].kind == 0 && open[s].t1 < 0)
                    open[s].t1 = t;
            continue;
        }
        if (strncmp(w, "cont ", 5) == 0 || strncmp(w, "restart ", 8) == 0) {
            const char *name = strchr(w, ' ') + 1;
            for (size_t s = 0; s < spans->n; s++)
                if (open[s].kind != 0 && open[s].t1 < 0 && strstr(open[s].label, name))
                    open[s].t1 = t;
            continue;
        }
        int kind = strncmp(w, "stop ", 5) == 0 ? 1 : strncmp(w, "kill ", 5) == 0 ? 2 : 0;
        if (strncmp(w, "partition", 9) != 0 && strncmp(w, "slow", 4) != 0 && kind == 0)
            continue;
        tn_err err;
        span *sp = tn_vec_push(spans, &err);
        if (sp == NULL)
            return err;
        *sp = (span) { t, -1.0, "", kind };
        snprintf(sp->label, sizeof sp->label, "%s", w);
    }
    return TN_OK;
}

static tn_err write_svg(const char *path, const tn_net *net, const tn_report *r)
{
    const tn_sample *samples = r->samples.items;
    const tn_event *events = r->events.items;
    size_t nsamples = r->samples.n;
    tn_vec spanv = TN_VEC_INIT(span, TN_REPORT_EVENTS_MAX);
    tn_err err = fault_spans(r, &spanv);
    if (err != TN_OK) {
        tn_msg("cannot draw the faults of %s: %s", path, tn_strerror(err));
        tn_vec_fini(&spanv);
        return err;
    }
    const span *spans = spanv.items;
    size_t nspans = spanv.n;
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        tn_msg("cannot write %s: %s", path, strerror(errno));
        tn_vec_fini(&spanv);
        return TN_EIO;
    }
    double tmax = 1.0;
    int64_t lmax = 1;
    for (size_t k = 0; k < nsamples; k++) {
        if ((double)samples[k].t_ms / 1000.0 > tmax)
            tmax = (double)samples[k].t_ms / 1000.0;
        for (size_t i = 0; i < net->n; i++)
            if (samples[k].lag[i] > lmax)
                lmax = samples[k].lag[i];
    }
    for (size_t k = 0; k < r->events.n; k++)
        if ((double)events[k].t_ms / 1000.0 > tmax)
            tmax = (double)events[k].t_ms / 1000.0;
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
        for (size_t k = 0; k < nsamples; k++) {
            if (samples[k].lag[i] < 0) {
                if (open)
                    fputs("\"/>\n", f);
                open = false;
                continue;
            }
            if (!open)
                fprintf(
                    f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", col);
            open = true;
            fprintf(f, "%.1f,%.1f ", L + pw * ((double)samples[k].t_ms / 1000.0) / tmax,
                T + ph - ph * (double)samples[k].lag[i] / (double)lmax);
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
    tn_vec_fini(&spanv);
    if (fclose(f) != 0) {
        tn_msg("cannot write %s: %s", path, strerror(errno));
        return TN_EIO;
    }
    return TN_OK;
}

tn_err tn_report_write(const char *path, const tn_net *net, const tn_report *r, json_object *head)
{
    const tn_event *events = r->events.items;
    const tn_sample *samples = r->samples.items;
    json_object *doc = json_object_new_object();
    json_object_object_add(doc, "run", json_object_get(head));
    json_object *names = json_object_new_array();
    for (size_t i = 0; i < net->n; i++)
        json_object_array_add(names, json_object_new_string(net->nodes[i].name));
    json_object_object_add(doc, "node_names", names);
    json_object *ev = json_object_new_array();
    for (size_t k = 0; k < r->events.n; k++) {
        json_object *e = json_object_new_object();
        json_object_object_add(e, "t", json_object_new_double((double)events[k].t_ms / 1e3));
        json_object_object_add(e, "kind", json_object_new_string(events[k].kind));
        json_object_object_add(e, "what", json_object_new_string(events[k].what));
        json_object_array_add(ev, e);
    }
    json_object_object_add(doc, "events", ev);
    json_object *sm = json_object_new_array();
    for (size_t k = 0; k < r->samples.n; k++) {
        json_object *s = json_object_new_object(), *lag = json_object_new_object();
        json_object_object_add(s, "t", json_object_new_double((double)samples[k].t_ms / 1e3));
        for (size_t i = 0; i < net->n; i++)
            json_object_object_add(lag, net->nodes[i].name,
                samples[k].lag[i] < 0 ? NULL : json_object_new_int64(samples[k].lag[i]));
        json_object_object_add(s, "lag", lag);
        json_object_array_add(sm, s);
    }
    json_object_object_add(doc, "lag_samples", sm);
    /* What did not fit (TN_REPORT_EVENTS_MAX, TN_REPORT_SAMPLES_MAX). */
    json_object_object_add(
        doc, "events_dropped", json_object_new_int64((int64_t)r->dropped_events));
    json_object_object_add(
        doc, "lag_samples_dropped", json_object_new_int64((int64_t)r->dropped_samples));
    tn_err err = tn_write_file(path, json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PRETTY));
    json_object_put(doc);
    if (err != TN_OK) {
        tn_msg("cannot write %s: %s", path, strerror(errno));
        return err;
    }
    char svg[TN_PATH_MAX];
    size_t len = strlen(path);
    if (len > 5 && strcmp(path + len - 5, ".json") == 0)
        tn_path(svg, sizeof svg, "%.*s.svg", (int)(len - 5), path);
    else
        tn_path(svg, sizeof svg, "%s.svg", path);
    return write_svg(svg, net, r);
}
