/*
 * The changelist's filter sidebar as a "Filter" button and a panel, where the list is too
 * narrow for both side by side (templates/admin/change_list.html). This script only adds the
 * button and opens and closes the panel; relevel/changelist.css decides, by the list's width,
 * whether the sidebar is folded at all. Without this script the sidebar stays a sidebar.
 */
'use strict';
{
    const panel = document.getElementById('changelist-filter');
    const main = document.getElementById('content-main');
    if (panel && main) {
        // The filters in use, by the choice each shows selected ("All" is every filter's first).
        const active = Array.from(panel.querySelectorAll('details ul')).flatMap(list => {
            const selected = list.querySelector('li.selected');
            return selected && selected !== list.firstElementChild ? [selected.textContent.trim()] : [];
        });

        // django-import-export's list templates render the object tools only with the add
        // permission: make the list if it is not there.
        let tools = main.querySelector(':scope > .object-tools');
        if (!tools) {
            tools = document.createElement('ul');
            tools.className = 'object-tools';
            main.prepend(tools);
        }
        const item = document.createElement('li');
        item.className = 'changelist-filter-toggle-item';
        const button = document.createElement('button');
        button.type = 'button';
        button.className = 'changelist-filter-toggle';
        button.setAttribute('aria-controls', panel.id);
        button.setAttribute('aria-expanded', 'false');
        button.textContent = active.length ? `Filter: ${active.join(', ')}` : 'Filter';
        if (active.length) {
            button.title = `Filtered by ${active.join(', ')}`;
            button.classList.add('changelist-filter-toggle-active');
        }
        item.append(button);
        tools.append(item);
        main.classList.add('filter-folds');

        const setOpen = open => {
            main.classList.toggle('filter-open', open);
            button.setAttribute('aria-expanded', String(open));
        };
        button.addEventListener('click', () => setOpen(!main.classList.contains('filter-open')));
        document.addEventListener('keydown', event => {
            if (event.key === 'Escape' && main.classList.contains('filter-open')) {
                setOpen(false);
                button.focus();
            }
        });
        // A click anywhere else closes the panel, as a menu would.
        document.addEventListener('click', event => {
            if (!panel.contains(event.target) && !button.contains(event.target)) {
                setOpen(false);
            }
        });
    }
}
