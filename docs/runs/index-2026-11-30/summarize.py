import json,sys,glob,collections
def load(f):
    rows=[json.loads(l) for l in open(f) if l.strip()]
    o={}
    for r in rows:
        m=r['metric']; b=r.get('baseline_name','')
        pg='2M' if '2 MiB' in m else '4K'
        v=r['value']; bv=r.get('baseline',0)
        if m.startswith('Get, ') and not m.startswith('Get, other'):
            if b.startswith('floor'): o[pg,'floor']=bv; o[pg,'get']=v
            if b=='bbolt': o['bbolt']=bv
            if b=='Go map': o['map']=bv
        if m.startswith('Get, other') and b.startswith('floor'):
            o[pg,'x']=v; o[pg,'rate']=float(r['detail'].split('(')[-1].split(' ')[0])
        if m.startswith('Put, ') and b=='Go map': o[pg,'put']=v; o['mapput']=bv
        if m.startswith('Put, ') and b=='bbolt': o['boltput']=bv
        if m.startswith('bytes') and b=='entry size': o['B']=v
        if m.startswith('bytes') and b=='Go map': o['mapB']=bv
        if m.startswith('bytes') and b=='bbolt': o['boltB']=bv
    return o
groups=collections.OrderedDict()
for f in sys.argv[1:]:
    key=f.split('/')[-1].rsplit('-',1)[0]
    groups.setdefault(key,[]).append(load(f))
def rng(vals,fmt="{:.0f}"):
    lo,hi=min(vals),max(vals)
    a,b=fmt.format(lo),fmt.format(hi)
    return a if a==b else a+"–"+b
for k,os in groups.items():
    print("##",k,len(os),"runs")
    for pg in ['4K','2M']:
        if (pg,'get') not in os[0]: continue
        g=[o[pg,'get'] for o in os]; fl=[o[pg,'floor'] for o in os]
        print(f" {pg}: floor {rng(fl)} ns; Get {rng(g)} ns; ÷floor ×{rng([o[pg,'get']/o[pg,'floor'] for o in os],'{:.2f}')}; ÷map ×{rng([o[pg,'get']/o['map'] for o in os],'{:.2f}')}; bbolt/Get {rng([o['bbolt']/o[pg,'get'] for o in os],'{:.1f}')}×; other proc {rng([o[pg,'x'] for o in os])} ns (÷floor ×{rng([o[pg,'x']/o[pg,'floor'] for o in os],'{:.2f}')}, ÷Get ×{rng([o[pg,'x']/o[pg,'get'] for o in os],'{:.2f}')}, puts/s {rng([o[pg,'rate']/1e6 for o in os],'{:.2f}')}M); Put {rng([o[pg,'put'] for o in os])} ns (÷map ×{rng([o[pg,'put']/o['mapput'] for o in os],'{:.2f}')}, ÷bbolt ×{rng([o[pg,'put']/o['boltput'] for o in os],'{:.3f}')})")
    print(f" map Get {rng([o['map'] for o in os])}; bbolt Get {rng([o['bbolt'] for o in os])}; map put {rng([o['mapput'] for o in os])}; bbolt put {rng([o['boltput'] for o in os])}; B/rec {rng([o['B'] for o in os],'{:.1f}')}; map B {rng([o['mapB'] for o in os])}; bolt B {rng([o['boltB'] for o in os])}")
